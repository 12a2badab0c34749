"""How sure a number is: two-stage bootstrap over seeds and questions, and multiple-comparison control.

A cell's score is the mean over its seeds (trained adapters) of the mean over questions.
Both are samples: another seed trains another adapter, other questions test other facts.
So a replicate resamples the seeds of each arm (independently: seed 0 of one condition is
not paired with seed 0 of another), then the questions (shared across arms: a difference
is paired on the same questions). With few seeds the plain seed bootstrap underestimates
the seed variance by (S-1)/S; each replicate's seed means are therefore spread by
sqrt(S/(S-1)) about their centre first, which makes that part unbiased (a 3-seed null
difference then crosses its 95% CI about 5% of the time, where averaging seeds away and
resampling questions alone flags it 30-60% of the time: tests/test_uncertainty.py).
With one seed only questions vary: the interval is conditional on that trained adapter.

Every estimate and its interval use the same questions: those scored for every seed of
every arm compared (NaN, e.g. an unparsed judgement, drops the question from both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bootstrap:
    n_resamples: int
    confidence: float
    seed: int

    def rng(self, *key) -> np.random.Generator:
        """A generator seeded by the config seed and `key` (e.g. the cells compared): a table's numbers
        do not depend on which other numbers were computed before them."""
        import zlib

        return np.random.default_rng([self.seed, zlib.crc32(repr(key).encode())])


def common_questions(arms: list[np.ndarray]) -> np.ndarray:
    """Columns (questions) with a value for every seed of every arm."""
    keep = np.ones(arms[0].shape[1], dtype=bool)
    for arm in arms:
        keep &= ~np.isnan(arm).any(axis=0)
    return keep


def replicate_means(arms: list[np.ndarray], n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_arms, n_resamples) bootstrap replicates of each arm's grand mean.

    `arms`: (seeds, questions) arrays over the same question columns. Questions are resampled
    once per replicate for all arms (paired); seeds independently per arm, after the
    small-sample rescaling described in the module docstring. NaN marks a question outside an
    arm's set (e.g. a capacity tier scored only on its trained items): each arm averages the
    resampled questions it has.
    """
    n_questions = arms[0].shape[1]
    counts = rng.multinomial(n_questions, np.full(n_questions, 1 / n_questions), size=n_resamples)
    out = []
    for arm in arms:
        present = ~np.isnan(arm)
        with np.errstate(invalid="ignore", divide="ignore"):
            # (seeds, replicates): each seed's mean on the resampled questions it has
            per_seed = (np.where(present, arm, 0.0) @ counts.T) / (present.astype(float) @ counts.T)
        n_seeds = arm.shape[0]
        if n_seeds == 1:
            out.append(per_seed[0])
            continue
        centre = per_seed.mean(axis=0, keepdims=True)
        per_seed = centre + np.sqrt(n_seeds / (n_seeds - 1)) * (per_seed - centre)
        chosen = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
        out.append(per_seed[chosen, np.arange(n_resamples)[:, None]].mean(axis=1))
    return np.stack(out)


def interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def p_value(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 'the difference is zero' (its interval excludes 0 iff p < 1 - confidence)."""
    n = len(replicates)
    below, above = np.sum(replicates <= 0), np.sum(replicates >= 0)
    return float(min(1.0, 2 * (min(below, above) + 1) / (n + 1)))


def estimate(arm: np.ndarray, boot: Bootstrap, key) -> dict:
    """A cell's score with its interval; `arm` is (seeds, questions) and may hold NaN."""
    arm = arm[:, common_questions([arm])]
    if arm.size == 0:
        return {"score": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_questions": 0,
                "n_seeds": int(arm.shape[0])}
    reps = replicate_means([arm], boot.n_resamples, boot.rng("score", key))[0]
    low, high = interval(reps, boot.confidence)
    return {"score": float(arm.mean()), "ci_low": low, "ci_high": high, "n_questions": int(arm.shape[1]),
            "n_seeds": int(arm.shape[0])}


def difference(a: np.ndarray, b: np.ndarray, boot: Bootstrap, key) -> dict:
    """a − b on the questions both have (point estimate and interval alike), paired on questions.

    `pct` is the difference in % of b's score on those questions (NaN when b is 0).
    """
    keep = common_questions([a, b])
    a, b = a[:, keep], b[:, keep]
    nan = float("nan")
    if not keep.any():
        return {"diff": nan, "pct": nan, "ci_low": nan, "ci_high": nan, "p": nan, "n_questions": 0}
    reps = replicate_means([a, b], boot.n_resamples, boot.rng("difference", key))
    delta = reps[0] - reps[1]
    low, high = interval(delta, boot.confidence)
    diff, reference = float(a.mean() - b.mean()), float(b.mean())
    return {"diff": diff, "pct": 100 * diff / abs(reference) if reference else nan, "ci_low": low, "ci_high": high,
            "p": p_value(delta), "n_questions": int(keep.sum())}


def holm(p_values: list[float], alpha: float) -> list[bool | None]:
    """Holm's step-down adjustment within one family (a table's column of comparisons); None where p is NaN."""
    from statsmodels.stats.multitest import multipletests

    present = [i for i, p in enumerate(p_values) if p == p]
    flags: list[bool | None] = [None] * len(p_values)
    if present:
        reject = multipletests([p_values[i] for i in present], alpha=alpha, method="holm")[0]
        for i, r in zip(present, reject):
            flags[i] = bool(r)
    return flags


def argmax_interval(curves: np.ndarray, positions: list, confidence: float) -> dict:
    """Where a curve peaks, with the spread of its bootstrap replicates.

    `curves`: (replicates, points). Returns the percentile interval of the peak position and
    the share of replicates that peak at each position.
    """
    peaks = np.asarray(positions)[np.argmax(curves, axis=1)]
    low, high = interval(peaks.astype(float), confidence)
    shares = {str(p): float(np.mean(peaks == p)) for p in positions}
    return {"ci_low": low, "ci_high": high, "shares": shares}
