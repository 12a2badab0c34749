"""Which rank fits which compression: a fit on the rank x compression grid, with its uncertainty.

Each rank gets its own line in TRR, score = a_r + c_r·TRR (rank as a category: with three or
more ranks the best one may lie in the middle, which a model linear in log2(rank) can never
say). In each TRR band that the measured grid reaches, the recommended rank is the one with
the highest predicted score, and the rank effect is its lead over the runner-up. Both are
refitted on every bootstrap replicate of the grid's cell scores (questions and seeds
resampled, paired across cells), so the effect carries an interval; when that interval
spans zero the answer is "no evidence for a rank difference", not a coin flip, and when
the effect's (1 − 2α) interval lies within ±δ (the metric's equivalence margin) it adds
"equivalent within ±δ" (TOST). A rank with fewer than two measured TRR levels is left out,
bands beyond the measured TRR range get no recommendation, and a band inside the range that
holds no measured TRR level is answered from the fitted lines alone (`interpolated`).
"""

from __future__ import annotations

import numpy as np

from .uncertainty import interval

# Bands of text reduction for which a rank is recommended (TRR %, [low, high)).
TRR_BANDS = ((0, 30), (30, 60), (60, 80), (80, 100))
NO_EVIDENCE = "no evidence for a rank difference"


def fit_lines(trr: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Least-squares (intercept, slope) of one rank's scores on TRR."""
    slope, intercept = np.polyfit(trr, scores, 1)
    return float(intercept), float(slope)


def band_points(measured: list[float]) -> list[tuple[str, float]]:
    """(band, TRR at which to compare ranks) for each band the measured TRR range reaches:
    the middle of the band's part inside [min, max] of the measured levels."""
    low_m, high_m = min(measured), max(measured)
    points = []
    for low, high in TRR_BANDS:
        lo, hi = max(low, low_m), min(high, high_m)
        if lo <= hi and lo < high:
            points.append((f"{low}-{high}", (lo + hi) / 2))
    return points


def recommend(grid: dict[int, dict[float, float]], replicates: dict[int, dict[float, np.ndarray]],
              confidence: float, margin: float | None = None) -> dict:
    """`grid`: rank -> {TRR: score}; `replicates`: rank -> {TRR: bootstrap replicates of that score};
    `margin`: the equivalence margin δ of the metric (None: no equivalence test)."""
    usable = {r: pts for r, pts in grid.items() if len([t for t, s in pts.items() if s == s]) >= 2}
    dropped = sorted(set(grid) - set(usable))
    if len(usable) < 2:
        return {"available": False, "dropped_ranks": dropped,
                "reason": "needs at least two ranks, each measured at two or more TRR levels"}
    ranks = sorted(usable)
    measured = sorted({t for r in ranks for t, s in usable[r].items() if s == s})

    def lines(scores_of) -> dict[int, tuple[float, float]]:
        out = {}
        for r in ranks:
            trr = np.array([t for t in usable[r] if usable[r][t] == usable[r][t]])
            out[r] = fit_lines(trr, np.array([scores_of(r, t) for t in trr]))
        return out

    point = lines(lambda r, t: usable[r][t])
    n_rep = len(next(iter(replicates[ranks[0]].values())))
    reps = [lines(lambda r, t, b=b: replicates[r][t][b]) for b in range(n_rep)]
    observed = np.array([usable[r][t] for r in ranks for t in usable[r] if usable[r][t] == usable[r][t]])
    fitted = np.array([point[r][0] + point[r][1] * t for r in ranks for t in usable[r] if usable[r][t] == usable[r][t]])
    ss_tot = float(((observed - observed.mean()) ** 2).sum())
    r2 = 1 - float(((observed - fitted) ** 2).sum()) / ss_tot if ss_tot else float("nan")

    bands = []
    bounds = dict((f"{lo}-{hi}", (lo, hi)) for lo, hi in TRR_BANDS)
    for band, t in band_points(measured):
        predicted = {r: point[r][0] + point[r][1] * t for r in ranks}
        order = sorted(ranks, key=lambda r: -predicted[r])
        best, runner_up = order[0], order[1]
        effects = np.array([(rep[best][0] + rep[best][1] * t) - (rep[runner_up][0] + rep[runner_up][1] * t)
                            for rep in reps])
        winners = np.array([max(ranks, key=lambda r, rep=rep: rep[r][0] + rep[r][1] * t) for rep in reps])
        low, high = interval(effects, confidence)
        evidence = bool(low > 0)
        tost_low, tost_high = interval(effects, 1 - 2 * (1 - confidence))
        same = None if margin is None else bool(-margin < tost_low and tost_high < margin)
        verdict = f"r={best}" if evidence else NO_EVIDENCE + (f"; equivalent within ±{margin:g}" if same else "")
        lo, hi = bounds[band]
        bands.append({
            "trr_band": band, "trr_at": t, "predicted_scores": predicted, "best_rank": best, "runner_up": runner_up,
            "rank_effect": predicted[best] - predicted[runner_up], "rank_effect_ci_low": low,
            "rank_effect_ci_high": high, "best_rank_share": float(np.mean(winners == best)),
            "recommended_rank": best if evidence else None, "verdict": verdict,
            "equivalent": same, "margin": margin,
            # no measured TRR level inside the band: its answer comes from the fitted lines alone
            "interpolated": not any(lo <= m < hi or (hi == 100 and m == 100) for m in measured),
        })
    return {
        "available": True,
        "relation": "score = a_r + c_r·TRR, one line per rank (rank as a category)",
        "lines": {str(r): {"a": point[r][0], "c": point[r][1]} for r in ranks},
        "r2": r2, "ranks": ranks, "dropped_ranks": dropped, "trr_measured": measured,
        "bands": bands,
        "bands_outside_data": [f"{lo}-{hi}" for lo, hi in TRR_BANDS
                               if f"{lo}-{hi}" not in {b["trr_band"] for b in bands}],
    }
