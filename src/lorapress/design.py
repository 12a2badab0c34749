"""`lorapress plan --design`: how many seeds and questions a study needs to see the seed study's claims.

From a pilot's per-question scores (results/tables/question_scores.csv) the variance components
of the model in `uncertainty` are estimated per dataset and metric:

* sigma_v^2, the seed variance of a trained cell's score: pooled over the pilot's cells with two or
  more seeds (their seed-means variance less the residual's share). A pilot with one seed cannot
  estimate it: the plan then uses the seed study's own replicate runs of one setting (sd 0.016 on its
  1-5 judge scale, 0.50% of their mean 3.236) as a documented prior: 0.016 on the judge's 1-5 scale,
  0.50% of the reference cell's score on any other metric;
* tau^2, the question-level interaction of a paired difference (how differently two cells fare on the
  same question): var_q(D_q) of each trained cell against the baseline less the residual parts;
* sigma_e^2, the residual per seed and question: pooled two-way residual mean square of cells with
  several seeds. With one seed it cannot be split from tau^2 and is counted there: conservative, as
  extra seeds are then not credited with averaging it away.

Each claim of the seed study (`claims.CLAIMS`) becomes a target difference in the pilot metric's
units: a relative claim (+2.10% over the baseline) times the pilot's score of the reference cell
(the baseline, original_text, ...); an absolute one (LongMemEval 21.2% vs 5.4% accuracy: 15.8 points;
r=4 vs r=16: 2.247 vs 2.212 = 0.035 on the 1-5 judge scale) as is when the metric has those units,
else relative to the reference cell. For seeds S = 2..max_seeds the fewest questions Q that reach the
power at level alpha/m (m claims: Holm's first, strictest step) are found from the design variance

    Var(d) = sigma_v^2/S_a + sigma_v^2/S_b + (tau^2 + sigma_e^2/S_a + sigma_e^2/S_b)/Q

(the untuned baseline has no seed term and its residual counts in full) with a noncentral t on the
guarded Satterthwaite df the intervals use; among them the cheapest design (by the `cost` callback:
GPU-hours from `plan.build_plan`, or S x Q) is proposed, and its power is checked by simulating
studies from the components and applying `uncertainty.difference`: while the simulated power falls
short, questions are added (x1.25 a step). A claim that no design up to max_seeds reaches says what
the largest design could see instead (the smallest difference max_seeds seeds detect with unlimited
questions: the seed level's floor) and how many seeds the claim itself would take. The capacity claim (an interior
peak) is no two-cell difference and is not designed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import optimize, stats

from . import BASELINE, ORIGINAL
from .claims import PAPER_REPLICATES
from .uncertainty import Bootstrap, components, difference

PRIOR_SEED_SD = float(np.std(PAPER_REPLICATES, ddof=1))  # 0.016 on the seed study's 1-5 judge scale
PRIOR_SCORE = float(np.mean(PAPER_REPLICATES))  # 3.236: the score that spread was measured at
JUDGE_SCALE = ("judge_score", "judge_expected")  # the 1-5 rubric
ACCURACY_SCALE = ("judge_accuracy", "judge_p_yes", "answer_preferred", "exact_match")  # % of questions
MAX_QUESTIONS = 1_000_000
MAX_SEEDS_SEARCHED = 100_000  # seeds per arm beyond which a claim is called out of reach
SIMULATE_CELLS = 100_000  # seeds x questions above which a design is not simulated (time)


@dataclass(frozen=True)
class VarianceComponents:
    seed_var: float  # sigma_v^2
    interaction_var: float  # tau^2 of a paired difference
    residual_var: float  # sigma_e^2 (0 when folded into tau^2)
    n_questions: int
    max_seeds: int
    scores: dict  # (condition, rank) -> the pilot's score of that cell
    seed_source: str
    residual_source: str


@dataclass(frozen=True)
class ClaimTarget:
    claim: str
    kind: str  # wiki | longmemeval | any
    a: tuple[str, int | None]  # (condition, rank or None)
    b: tuple[str, int | None]
    relative: float | None  # claimed difference as a share of the reference cell's score
    absolute: float | None = None  # claimed difference in the units of `absolute_metrics`
    absolute_metrics: tuple[str, ...] = ()


DESIGN_CLAIMS = (
    ClaimTarget("wiki_l1_vs_baseline", "wiki", ("summ_l1_slight", None), (BASELINE, None), +0.0210),
    ClaimTarget("wiki_l1_vs_original", "wiki", ("summ_l1_slight", None), (ORIGINAL, None), +0.0029),
    ClaimTarget("wiki_l3_vs_baseline", "wiki", ("summ_l3_medium", None), (BASELINE, None), -0.092),
    ClaimTarget("wiki_l5_vs_baseline", "wiki", ("summ_l5_extreme", None), (BASELINE, None), -0.297),
    ClaimTarget("lme_l2_vs_original", "longmemeval", ("summ_l2_light", None), (ORIGINAL, None),
                (21.2 - 5.4) / 5.4, 21.2 - 5.4, ACCURACY_SCALE),
    ClaimTarget("rank4_beats_rank16_on_l5", "any", ("summ_l5_extreme", 4), ("summ_l5_extreme", 16),
                (2.247 - 2.212) / 2.212, 2.247 - 2.212, JUDGE_SCALE),
)


# ---------------------------------------------------------------- the pilot's components
def _matrix(cell: pd.DataFrame) -> np.ndarray:
    table = cell.pivot_table(index="seed", columns="question_id", values="value", aggfunc="first")
    return table.to_numpy(float)


def estimate_components(pilot: pd.DataFrame, dataset: str, metric: str) -> VarianceComponents:
    """Variance components of one dataset and metric from a pilot's per-question scores."""
    part = pilot[(pilot["dataset"] == dataset) & (pilot["metric"] == metric)]
    if "question_set" in part:
        part = part[part["question_set"] == "dataset"]
    part = part.dropna(subset=["value"])
    if part.empty:
        raise ValueError(f"pilot: no {metric} scores for dataset {dataset}")
    cells = {}
    for (condition, rank, _items), cell in part.groupby(["condition", "rank", "items"]):
        cells[(condition, 0 if condition == BASELINE else int(rank))] = _matrix(cell)
    scores = {k: float(np.nanmean(m)) for k, m in cells.items()}
    seeded = [m[:, ~np.isnan(m).any(axis=0)] for m in cells.values() if m.shape[0] > 1]
    seeded = [m for m in seeded if m.shape[1] > 1]
    if seeded:
        weights = [m.shape[0] - 1 for m in seeded]
        comps = [components(m) for m in seeded]
        seed_var = float(np.average([c.seed_var for c in comps], weights=weights))
        residual = float(np.average([c.ms_residual for c in comps], weights=[w * (c.n_questions - 1)
                                                                              for w, c in zip(weights, comps)]))
        seed_source = f"pilot: pooled over {len(seeded)} cells with 2+ seeds"
        residual_source = "pilot: pooled two-way residual mean square"
    else:
        reference = scores.get((ORIGINAL, _top_rank(scores, ORIGINAL)), float(np.nanmean(list(scores.values()))))
        if metric in JUDGE_SCALE:
            sd, how = PRIOR_SEED_SD, f"{PRIOR_SEED_SD:.4f} on the 1-5 judge scale"
        else:
            sd = PRIOR_SEED_SD / PRIOR_SCORE * abs(reference)
            how = f"{100 * PRIOR_SEED_SD / PRIOR_SCORE:.2f}% of the reference score {reference:.4g} = {sd:.4g}"
        seed_var, residual = sd ** 2, 0.0
        seed_source = (f"prior (one seed in the pilot): the seed study's replicate sd, {how}")
        residual_source = "one seed: folded into the interaction (conservative)"
    base = cells.get((BASELINE, 0))
    interactions = []
    pairs = [(m, base) for k, m in cells.items() if k[0] != BASELINE] if base is not None else \
        list(zip(list(cells.values())[1:], list(cells.values())[:-1]))
    for a, b in pairs:
        keep = ~np.isnan(a).any(axis=0) & ~np.isnan(b).any(axis=0)
        if keep.sum() < 2:
            continue
        a, b = a[:, keep], b[:, keep]
        paired = a.mean(axis=0) - b.mean(axis=0)
        less = sum(residual / m.shape[0] for m in (a, b))
        interactions.append(max(0.0, float(paired.var(ddof=1)) - less))
    if not interactions:
        raise ValueError(f"pilot: {dataset}/{metric} needs two cells on common questions")
    return VarianceComponents(seed_var, float(np.mean(interactions)), residual,
                              int(part["question_id"].nunique()), max(m.shape[0] for m in cells.values()),
                              scores, seed_source, residual_source)


def _top_rank(scores: dict, condition: str) -> int | None:
    ranks = [r for c, r in scores if c == condition]
    return max(ranks) if ranks else None


# ---------------------------------------------------------------- power of a design
def design_variance(c: VarianceComponents, seeds: int, questions: int, vs_baseline: bool) -> tuple[float, float]:
    """(variance, df) of a difference with `seeds` per trained arm on `questions` questions; the
    df is the intervals' guarded Satterthwaite df (uncertainty.t_variance) at the expected pieces."""
    arms = 1 if vs_baseline else 2
    seed_pieces = [(c.seed_var / seeds, seeds - 1)] * arms
    residual = c.residual_var * (1 / seeds + (1.0 if vs_baseline else 1 / seeds))
    question_piece = ((c.interaction_var + residual) / questions, questions - 1)
    variance = sum(v for v, _ in seed_pieces) + question_piece[0]
    guarded = [(v * k / stats.chi2.ppf(0.25, k), k) for v, k in seed_pieces] + [question_piece]
    total = sum(v for v, _ in guarded)
    df = total * total / sum(v * v / k for v, k in guarded if v > 0) if total > 0 else float("inf")
    return variance, df


def power(target: float, variance: float, df: float, alpha: float) -> float:
    """Two-sided power of a t test at level `alpha` for a true difference `target` (noncentral t)."""
    if variance <= 0:
        return 1.0
    ncp, crit = abs(target) / np.sqrt(variance), stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def _fewest_passing(ok: Callable[[int], bool], start: int, limit: int) -> int | None:
    """The smallest n in [start, limit] with ok(n), for an `ok` that stays true once true (power grows with
    questions and with seeds): doubling, then bisection. None if ok(limit) is false."""
    low, high = start - 1, start  # low: known to fail (or below the range)
    while not ok(high):
        if high >= limit:
            return None
        low, high = high, min(2 * high, limit)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if ok(mid) else (mid, high)
    return high


def fewest_questions(c: VarianceComponents, seeds: int, target: float, alpha: float, wanted: float,
                     vs_baseline: bool) -> int | None:
    """The fewest questions that reach `wanted` power with `seeds` seeds (None: no number of questions does,
    the seed level alone is too noisy)."""
    return _fewest_passing(lambda q: power(target, *design_variance(c, seeds, q, vs_baseline), alpha) >= wanted,
                           2, MAX_QUESTIONS)


def smallest_detectable(c: VarianceComponents, seeds: int, questions: int, alpha: float, wanted: float,
                        vs_baseline: bool) -> float:
    """The smallest difference (in the metric's units, as a magnitude) that `seeds` seeds per trained arm on
    `questions` questions see with `wanted` power at level `alpha`: what a design can promise when a claim's
    own difference is out of its reach."""
    variance, df = design_variance(c, seeds, questions, vs_baseline)
    if variance <= 0:
        return 0.0
    high = np.sqrt(variance)
    while power(high, variance, df, alpha) < wanted:
        high *= 2
    return float(optimize.brentq(lambda d: power(d, variance, df, alpha) - wanted, 0.0, high, xtol=1e-12 * high))


def seeds_needed(c: VarianceComponents, target: float, alpha: float, wanted: float, vs_baseline: bool,
                 start: int = 2, limit: int = MAX_SEEDS_SEARCHED) -> int | None:
    """The fewest seeds per trained arm (from `start`) that reach `wanted` power for `target` with as many
    questions as needed (MAX_QUESTIONS, as for smallest_detectable's floor); None beyond `limit`."""
    return _fewest_passing(
        lambda s: power(target, *design_variance(c, s, MAX_QUESTIONS, vs_baseline), alpha) >= wanted, start, limit)


def simulated_power(c: VarianceComponents, seeds: int, questions: int, target: float, alpha: float,
                    vs_baseline: bool, n_studies: int = 200, seed: int = 0) -> float:
    """Share of simulated studies (drawn from the components) whose interval at level alpha (from
    `uncertainty.difference`) excludes zero on the side of `target`."""
    rng = np.random.default_rng(seed)
    boot = Bootstrap(n_resamples=200, confidence=1 - alpha, seed=seed)
    sd_v, sd_e, sd_w = np.sqrt(c.seed_var), np.sqrt(c.residual_var), np.sqrt(c.interaction_var)
    found = 0
    for i in range(n_studies):
        a = target + rng.normal(0, sd_w, (1, questions)) + rng.normal(0, sd_v, (seeds, 1)) \
            + rng.normal(0, sd_e, (seeds, questions))
        if vs_baseline:
            b = rng.normal(0, sd_e, (1, questions))
        else:
            b = rng.normal(0, sd_v, (seeds, 1)) + rng.normal(0, sd_e, (seeds, questions))
        d = difference(a, b, boot, ("design", i))
        found += bool(d["ci_low"] > 0) if target > 0 else bool(d["ci_high"] < 0)
    return found / n_studies


# ---------------------------------------------------------------- claims
def claim_target(claim: ClaimTarget, c: VarianceComponents, metric: str) -> tuple[float, str]:
    """The claimed difference in the pilot metric's units, and how it was read."""
    if claim.absolute is not None and metric in claim.absolute_metrics:
        return claim.absolute, f"{claim.absolute:+.4g} as published ({metric})"
    condition, rank = claim.b
    if rank is None:
        rank = 0 if condition == BASELINE else _top_rank(c.scores, condition)
    reference = c.scores.get((condition, rank))
    name = f"{condition}" + (f" r={rank}" if rank else "")
    if reference is None:  # the pilot lacks that cell: its mean over cells stands in
        reference, name = float(np.mean(list(c.scores.values()))), "the pilot's mean cell (reference cell absent)"
    return claim.relative * abs(reference), (f"{100 * claim.relative:+.2f}% × pilot {name} score "
                                             f"{reference:.4g}")


def design_claims(pilot: pd.DataFrame, metric_of: Callable[[str], str], kind_of: Callable[[str], str],
                  wanted: float = 0.8, alpha: float = 0.05, max_seeds: int = 20,
                  cost: Callable[[str, int, int], float] | None = None, n_studies: int = 200,
                  final_cost: Callable[[str, int, int], float] | None = None) -> list[dict]:
    """One design per claim and pilot dataset of its kind. `metric_of(dataset)`: the metric to plan on;
    `kind_of(dataset)`: wiki | longmemeval; `cost(dataset, seeds, questions)`: what the search minimises
    (GPU-hours; default seeds × questions); `final_cost`: the chosen design's reported cost (default `cost`)."""
    datasets = sorted(pilot["dataset"].unique())
    jobs = [(claim, d) for claim in DESIGN_CLAIMS for d in datasets if claim.kind in ("any", kind_of(d))]
    m = max(1, len(jobs))
    level = alpha / m  # Holm's first step over the claims designed
    cost = cost or (lambda dataset, s, q: s * q)
    final_cost = final_cost or cost
    found_components: dict = {}
    rows = []
    for claim, dataset in jobs:
        metric = metric_of(dataset)
        key = (dataset, metric)
        if key not in found_components:
            found_components[key] = estimate_components(pilot, dataset, metric)
        c = found_components[key]
        target, how = claim_target(claim, c, metric)
        vs_baseline = claim.b[0] == BASELINE
        options = []
        for s in range(2, max_seeds + 1):
            q = fewest_questions(c, s, target, level, wanted, vs_baseline)
            if q is not None:
                options.append((cost(dataset, s, q), s, q))
        row = {"claim": claim.claim, "dataset": dataset, "metric": metric, "target": target, "target_from": how,
               "alpha_per_claim": level, "m_claims": m, "seed_var": c.seed_var, "interaction_var": c.interaction_var,
               "residual_var": c.residual_var, "seed_source": c.seed_source, "residual_source": c.residual_source,
               "pilot_questions": c.n_questions}
        if not options:
            # what the largest design could see instead, and what the claim would take: the seed level
            # sets a floor that no number of questions lowers
            floor = smallest_detectable(c, max_seeds, MAX_QUESTIONS, level, wanted, vs_baseline)
            needed = seeds_needed(c, target, level, wanted, vs_baseline, start=max_seeds + 1)
            rows.append({**row, "seeds": None, "questions": None, "power": None, "simulated_power": None,
                         "cost": None, "smallest_detectable": floor, "seeds_needed": needed,
                         "note": f"not reachable with up to {max_seeds} seeds: the smallest difference they "
                                 f"detect is ±{floor:.4g}, however many questions; this one needs "
                                 + (f"{needed} seeds per trained arm" if needed else
                                    f"more than {MAX_SEEDS_SEARCHED:,} seeds per trained arm")})
            continue
        best_cost, seeds, questions = min(options)
        analytic = questions
        # The noncentral t is an approximation (with few questions the estimated question variance and the
        # df vary too): the simulation of the intervals decides, and adds questions while it falls short
        # of the power (the guard on the seed level's df makes the intervals a little more cautious than the
        # noncentral t at the expected df assumes).
        simulated, note = None, ""
        for _ in range(12):
            if seeds * questions > SIMULATE_CELLS:
                note = "too large to simulate"
                break
            simulated = simulated_power(c, seeds, questions, target, level, vs_baseline, n_studies)
            if simulated >= wanted:
                break
            questions = int(np.ceil(questions * 1.25))
            note = "questions raised until the simulation reached the power"
        variance, df = design_variance(c, seeds, questions, vs_baseline)
        rows.append({**row, "seeds": seeds, "questions": questions, "questions_analytic": analytic,
                     "power": power(target, variance, df, level),
                     "simulated_power": simulated, "cost": final_cost(dataset, seeds, questions), "note": note})
    return rows


def render(rows: list[dict], wanted: float) -> str:
    lines = [f"Design per claim: {wanted:.0%} power at α/m (Holm's first step over the m claims designed), "
             "t intervals over seeds and paired questions", ""]
    header = f"{'claim':28} {'dataset':12} {'metric':14} {'target':>10} {'seeds':>5} {'questions':>9} " \
             f"{'power':>6} {'simulated':>9} {'GPU-h':>9}"
    lines += [header, "-" * len(header)]
    for r in rows:
        def n(v, fmt):
            return "–" if v is None else format(v, fmt)
        lines.append(f"{r['claim']:28} {r['dataset']:12} {r['metric']:14} {r['target']:>+10.4g} "
                     f"{n(r['seeds'], 'd'):>5} {n(r['questions'], 'd'):>9} {n(r['power'], '.2f'):>6} "
                     f"{n(r['simulated_power'], '.2f'):>9} {n(r['cost'], '.1f'):>9}"
                     + (f"  {r['note']}" if r["note"] else ""))
    lines += ["", "How each number was read:"]
    seen = set()
    for r in rows:
        lines.append(f"  - {r['claim']} ({r['dataset']}): target {r['target_from']}")
        if (r["dataset"], r["metric"]) not in seen:
            seen.add((r["dataset"], r["metric"]))
            lines.append(f"  - {r['dataset']}/{r['metric']}: seed sd {np.sqrt(r['seed_var']):.4g} "
                         f"[{r['seed_source']}]; question interaction sd {np.sqrt(r['interaction_var']):.4g} "
                         f"[pilot, {r['pilot_questions']} questions]; residual sd {np.sqrt(r['residual_var']):.4g} "
                         f"[{r['residual_source']}]")
    return "\n".join(lines)
