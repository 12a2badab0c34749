"""How sure a number is: seed- and question-level intervals, detectable differences, equivalence,
and multiple-comparison control.

A cell's score is the mean over its seeds (trained adapters) of the mean over questions. Both
are samples: another seed trains another adapter, other questions test other facts. The model
behind every interval is

    y[a, s, q] = mu_a + u[a, q] + v[a, s] + e[a, s, q]

(arm a, seed s, question q): u the question effects (shared across arms up to an arm x question
interaction, so a difference is paired on questions), v the seed effect of one trained adapter,
e the residual. With S seeds and Q questions, per arm:

* m_s = the seed means; var(m)/S estimates sigma_v^2/S + sigma_e^2/(S Q);
* c_q = the seed-averaged per-question scores; var_q(c) estimates sigma_u^2 + sigma_e^2/S;
* MS_res = the two-way (seed x question) residual mean square, which estimates sigma_e^2.

So var(m)/S + max(0, var_q(c) - MS_res/S)/Q estimates the variance of the grand mean without
counting sigma_e^2 twice; for a difference a - b, c_q becomes D_q = c_a,q - c_b,q and both arms'
residuals are subtracted. An arm with one seed (the untuned baseline always; a one-seed trained
arm conditionally on its adapter) has no seed term and its residual is not subtracted: its
seed-and-noise part is then in var_q(D). The seed terms have S - 1 degrees of freedom: the
interval is d +/- t_df se with Satterthwaite's df from the components, because with 3 seeds the
seed variance is known to 2 df, and a percentile bootstrap of 3 seed means cannot produce the
t tails this needs (at 1,500 questions and 3 seeds it flagged 8-15% of null differences at 5%;
tests/test_uncertainty.py measures both). When every arm has one seed nothing but questions
varies: the interval is the paired question bootstrap, conditional on the adapters.

Bootstrap replicates (capacity peak and knee, the rank fit) get the same seed-level tails:
each replicate is the question-resampled seed-averaged centre plus, per arm, an independent
draw of sd_v/sqrt(S) x T_{S-1} (sd_v^2 = var(m) - MS_res/Q: the seed variance without the
residual the question resampling already carries).

Every estimate and its interval use the same questions: those scored for every seed of every
arm compared (NaN, e.g. an unparsed judgement, drops the question from both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

POWER = 0.8  # the power of a smallest detectable difference (MDD)


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

    @property
    def alpha(self) -> float:
        return 1 - self.confidence


def common_questions(arms: list[np.ndarray]) -> np.ndarray:
    """Columns (questions) with a value for every seed of every arm."""
    keep = np.ones(arms[0].shape[1], dtype=bool)
    for arm in arms:
        keep &= ~np.isnan(arm).any(axis=0)
    return keep


# ---------------------------------------------------------------- variance components
@dataclass(frozen=True)
class Components:
    """One arm's variance components on complete questions (see the module docstring)."""

    n_seeds: int
    n_questions: int
    seed_means_var: float  # var(m), ddof 1 (NaN with one seed)
    question_var: float  # var_q(c), ddof 1 (NaN with one question)
    ms_residual: float  # two-way residual mean square (NaN with one seed or one question)

    @property
    def seed_var(self) -> float:
        """sigma_v^2: the seed variance without the residual's share of the seed means (>= 0)."""
        if self.n_seeds < 2:
            return float("nan")
        residual = self.ms_residual / self.n_questions if self.ms_residual == self.ms_residual else 0.0
        return max(0.0, self.seed_means_var - residual)


def components(arm: np.ndarray) -> Components:
    """Variance components of a complete (seeds, questions) matrix."""
    s, q = arm.shape
    seed_means, question_means = arm.mean(axis=1), arm.mean(axis=0)
    seed_var = float(seed_means.var(ddof=1)) if s > 1 else float("nan")
    question_var = float(question_means.var(ddof=1)) if q > 1 else float("nan")
    ms_res = float("nan")
    if s > 1 and q > 1:
        residual = arm - seed_means[:, None] - question_means[None, :] + arm.mean()
        ms_res = float((residual ** 2).sum() / ((s - 1) * (q - 1)))
    return Components(s, q, seed_var, question_var, ms_res)


def question_se(arm: np.ndarray) -> float:
    """sd of the per-question seed-averaged scores / sqrt(Q): how much the score would move with other
    questions (with several seeds it also carries the residual's share; NaN with under two questions)."""
    arm = arm[:, common_questions([arm])]
    q = arm.shape[1]
    return float(arm.mean(axis=0).std(ddof=1) / np.sqrt(q)) if q > 1 else float("nan")


def _satterthwaite(pieces: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite df of a sum of variance pieces (coefficient x mean square, df)."""
    total = sum(v for v, _ in pieces)
    denominator = sum(v * v / df for v, df in pieces if df > 0)
    return float(total * total / denominator) if denominator > 0 else float("inf")


def t_variance(arms: list[tuple[np.ndarray, int]], paired_questions: np.ndarray) -> tuple[float, float]:
    """(variance, df) of sum_i sign_i * mean(arm_i), from the components.

    `arms`: (complete (seeds, questions) matrix, sign); `paired_questions`: the per-question
    combination (c_q for one arm, D_q for a difference), seed-averaged.
    """
    seed_pieces, question_pieces = [], []
    q = len(paired_questions)
    for arm, _ in arms:
        c = components(arm)
        if c.n_seeds > 1:
            seed_pieces.append((c.seed_means_var / c.n_seeds, c.n_seeds - 1))
            if q > 1:
                question_pieces.append((-c.ms_residual / (c.n_seeds * q), (c.n_seeds - 1) * (q - 1)))
    if q > 1:
        question_pieces.insert(0, (float(paired_questions.var(ddof=1)) / q, q - 1))
    if sum(v for v, _ in question_pieces) <= 0:  # a negative question term estimates zero: dropped
        question_pieces = []
    variance = sum(v for v, _ in seed_pieces + question_pieces)
    if not variance > 0:
        return float(variance), float("nan")
    # The df formula plugs in each seed piece at k/chi2_{k,0.25} times its estimate (the seed variance
    # of which the estimate is the lower quartile). Plugged in as estimated, a seed variance on 2 df
    # (exponentially distributed: often near 0) makes the df large exactly when the statistic is large:
    # baseline vs 3 seeds then flagged 7-8% of null differences; guarded, 3.5-6.5% over 72 and 1,500
    # questions, 1-5 seeds and small and large seed sd (tests/test_uncertainty.py).
    guarded = [(v * k / stats.chi2.ppf(0.25, k), k) for v, k in seed_pieces]
    return float(variance), _satterthwaite(guarded + question_pieces)


# ---------------------------------------------------------------- bootstrap replicates
def _seed_draws(arm: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """sd_v/sqrt(S) x T_{S-1} per replicate: the seed level with its small-sample tails."""
    complete = arm[:, common_questions([arm])]
    if arm.shape[0] < 2 or complete.shape[1] == 0:
        return np.zeros(n_resamples)
    c = components(complete)
    return np.sqrt(c.seed_var / c.n_seeds) * rng.standard_t(c.n_seeds - 1, size=n_resamples)


def replicate_means(arms: list[np.ndarray], n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_arms, n_resamples) bootstrap replicates of each arm's grand mean.

    `arms`: (seeds, questions) arrays over the same question columns. Questions are resampled
    once per replicate for all arms (paired); each arm with several seeds adds its own seed
    draw with t tails (module docstring). NaN marks a question outside an arm's set (e.g. a
    capacity tier scored only on its trained items): each arm averages the resampled
    questions it has.
    """
    n_questions = arms[0].shape[1]
    picks = rng.integers(0, n_questions, size=(n_resamples, n_questions))
    out = []
    for arm in arms:
        present = ~np.isnan(arm)
        values = np.where(present, arm, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            # (seeds, replicates): each seed's mean on the resampled questions it has
            per_seed = values[:, picks].sum(axis=2) / present[:, picks].sum(axis=2)
        out.append(per_seed.mean(axis=0) + _seed_draws(arm, n_resamples, rng))
    return np.stack(out)


def question_replicates(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Replicates of the mean of one complete per-question vector (questions resampled)."""
    picks = rng.integers(0, len(values), size=(n_resamples, len(values)))
    return values[picks].mean(axis=1)


def interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def p_value(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 'the difference is zero' (its interval excludes 0 iff p < 1 - confidence)."""
    n = len(replicates)
    below, above = np.sum(replicates <= 0), np.sum(replicates >= 0)
    return float(min(1.0, 2 * (min(below, above) + 1) / (n + 1)))


# ---------------------------------------------------------------- numbers with their uncertainty
def _t_summary(centre: float, variance: float, df: float, alpha: float) -> dict:
    """Interval, p-value and the (1 - 2 alpha) interval that TOST equivalence reads."""
    nan = float("nan")
    if not variance > 0 or df != df:
        exact = variance == 0
        return {"se": 0.0 if exact else nan, "df": df, "ci_low": centre if exact else nan,
                "ci_high": centre if exact else nan, "tost_low": centre if exact else nan,
                "tost_high": centre if exact else nan,
                "p": (1.0 if centre == 0 else 0.0) if exact else nan, "method": "t"}
    se = float(np.sqrt(variance))
    half, tost = stats.t.ppf(1 - alpha / 2, df) * se, stats.t.ppf(1 - alpha, df) * se
    return {"se": se, "df": float(df), "ci_low": centre - half, "ci_high": centre + half,
            "tost_low": centre - tost, "tost_high": centre + tost,
            "p": float(2 * stats.t.sf(abs(centre) / se, df)), "method": "t"}


def _bootstrap_summary(replicates: np.ndarray, alpha: float, df: float) -> dict:
    low, high = interval(replicates, 1 - alpha)
    tost_low, tost_high = interval(replicates, 1 - 2 * alpha)
    return {"se": float(np.std(replicates, ddof=1)), "df": df, "ci_low": low, "ci_high": high,
            "tost_low": tost_low, "tost_high": tost_high, "p": p_value(replicates), "method": "bootstrap"}


def estimate(arm: np.ndarray, boot: Bootstrap, key) -> dict:
    """A cell's score with its interval; `arm` is (seeds, questions) and may hold NaN."""
    arm = arm[:, common_questions([arm])]
    nan = float("nan")
    if arm.size == 0:
        return {"score": nan, "ci_low": nan, "ci_high": nan, "n_questions": 0, "n_seeds": int(arm.shape[0]),
                "question_se": nan, "se": nan, "df": nan}
    score = float(arm.mean())
    if arm.shape[0] == 1:  # conditional on the adapter: only questions vary
        reps = question_replicates(arm[0], boot.n_resamples, boot.rng("score", key))
        summary = _bootstrap_summary(reps, boot.alpha, arm.shape[1] - 1)
    else:
        variance, df = t_variance([(arm, 1)], arm.mean(axis=0))
        summary = _t_summary(score, variance, df, boot.alpha)
    return {"score": score, "ci_low": summary["ci_low"], "ci_high": summary["ci_high"],
            "n_questions": int(arm.shape[1]), "n_seeds": int(arm.shape[0]), "question_se": question_se(arm),
            "se": summary["se"], "df": summary["df"]}


def difference(a: np.ndarray, b: np.ndarray, boot: Bootstrap, key) -> dict:
    """a − b on the questions both have (point estimate and interval alike), paired on questions.

    `pct` is the difference in % of b's score on those questions (NaN when b is 0); `se` and `df`
    give the smallest detectable difference; `tost_low`/`tost_high` the (1 − 2α) interval that an
    equivalence test reads.
    """
    keep = common_questions([a, b])
    a, b = a[:, keep], b[:, keep]
    nan = float("nan")
    if not keep.any():
        return {"diff": nan, "pct": nan, "ci_low": nan, "ci_high": nan, "p": nan, "n_questions": 0, "se": nan,
                "df": nan, "tost_low": nan, "tost_high": nan, "method": None}
    diff, reference = float(a.mean() - b.mean()), float(b.mean())
    paired = a.mean(axis=0) - b.mean(axis=0)
    if a.shape[0] == 1 and b.shape[0] == 1:  # conditional on both adapters: the paired question bootstrap
        reps = question_replicates(paired, boot.n_resamples, boot.rng("difference", key))
        summary = _bootstrap_summary(reps, boot.alpha, len(paired) - 1)
    else:
        variance, df = t_variance([(a, 1), (b, -1)], paired)
        summary = _t_summary(diff, variance, df, boot.alpha)
    return {"diff": diff, "pct": 100 * diff / abs(reference) if reference else nan, **summary,
            "n_questions": int(keep.sum())}


def mdd(se: float, df: float, alpha: float, m: int, power: float = POWER) -> float:
    """Smallest difference detected with `power` by a two-sided test at level alpha/m (the first
    step of Holm's procedure over m comparisons, the strictest): (t_{df,1-alpha/(2m)} + t_{df,power}) se."""
    if not (se == se and df == df and m >= 1) or df <= 0:
        return float("nan")
    return float((stats.t.ppf(1 - alpha / (2 * m), df) + stats.t.ppf(power, df)) * se)


def equivalent(tost_low: float, tost_high: float, margin: float | None) -> bool | None:
    """TOST: equivalent within ±margin iff the (1 − 2α) interval lies inside it (None: no margin or interval)."""
    if margin is None or tost_low != tost_low or tost_high != tost_high:
        return None
    return bool(-margin < tost_low and tost_high < margin)


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
