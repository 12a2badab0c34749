"""What these runs support: the headline claims of the study lorapress was built to reproduce,
each tested on this run's data.

The claims were published as bare percentages. Here each one becomes a comparison between two
cells of a table, and its verdict comes from the interval of that difference (Holm-adjusted
where the table adjusts): *supported* (the interval lies on the claimed side of zero),
*contradicted* (it lies on the other side), or *not significant* (it spans zero). Where this
run lacks a cell (a variant, a grid or a dataset switched off) the claim is *not tested*.
Where the judge failed its controls on a dataset (it could not tell a known-right answer from
a known-wrong one), a claim on a judge metric there reads *judge uninformative*: its score tests
nothing, so it gets no estimate and no verdict.
A *not significant* verdict is read further (`reading`): "equivalent within ±δ" when the
(1 − 2α) interval lies inside the metric's equivalence margin (TOST), else "too small to see
with these seeds" with the smallest difference the comparison could detect (MDD, 80% power
at the table's Holm-adjusted level): absence of evidence is not evidence of absence.
The study's own replicate runs of one setting scored 3.222, 3.227, 3.237 and 3.259 on its 1-5
judge scale: a run-to-run spread of 0.037, as large as several of the differences it reports.
"""

from __future__ import annotations

import pandas as pd

from . import BASELINE, ORIGINAL
from .metrics import is_judge_metric

PAPER_REPLICATES = (3.2224, 3.2272, 3.2368, 3.2589)
JUDGE_UNINFORMATIVE = "judge uninformative"

# (id, dataset kind, claim as published, experiment, row a, row b, claimed sign of a - b)
CLAIMS = (
    ("wiki_l1_vs_baseline", "wiki", "Wiki: light summarisation (l1, TRR ≈ 35%) scored +2.10% over the untuned baseline",
     "compression", "summ_l1_slight", BASELINE, +1),
    ("wiki_l1_vs_original", "wiki", "Wiki: l1 scored +0.29% over original text",
     "compression", "summ_l1_slight", ORIGINAL, +1),
    ("wiki_l3_vs_baseline", "wiki", "Wiki: l3 fell −9.2% (read here as against the baseline)",
     "compression", "summ_l3_medium", BASELINE, -1),
    ("wiki_l5_vs_baseline", "wiki", "Wiki: l5 fell −29.7% (read here as against the baseline)",
     "compression", "summ_l5_extreme", BASELINE, -1),
    ("lme_l2_vs_original", "longmemeval", "LongMemEval: l2 peaked at 21.2% accuracy against 5.4% for original text",
     "compression", "summ_l2_light", ORIGINAL, +1),
    ("capacity_interior_peak", "any", "Knowledge capacity peaked at 250 of 50–500 items (an interior peak: "
     "the largest tier scores below the peak)", "capacity", None, None, +1),
    ("rank4_beats_rank16_on_l5", "any", "On heavily compressed text r=4 scored above r=16 (l5: 2.247 vs 2.212 on a "
     "1–5 judge scale)", "rank_compression", "summ_l5_extreme", None, +1),
)


# The TRR at which the seed study measured each claim's compressed variant (its tables): wiki l1 35.2%, l5 89.7%;
# LongMemEval l2 ~96%. Its wiki l3 TRR is not in the material lorapress was built from: None, shown as unknown.
SEED_TRR = {"wiki_l1_vs_baseline": 35.2, "wiki_l1_vs_original": 35.2, "wiki_l3_vs_baseline": None,
            "wiki_l5_vs_baseline": 89.7, "lme_l2_vs_original": 96.0, "rank4_beats_rank16_on_l5": 89.7}


def tested_trr(table: pd.DataFrame | None, condition: str | None) -> float | None:
    """The mean TRR of `condition` in this run (its table's trr_mean), where the table has it."""
    if table is None or condition is None or "trr_mean" not in table or "condition" not in table:
        return None
    rows = table.loc[table["condition"] == condition, "trr_mean"].dropna()
    return None if rows.empty else float(rows.iloc[0])


def verdict(low: float, high: float, sign: int) -> str:
    if low != low or high != high:
        return "not tested"
    if (sign > 0 and low > 0) or (sign < 0 and high < 0):
        return "supported"
    if (sign > 0 and high < 0) or (sign < 0 and low > 0):
        return "contradicted"
    return "not significant"


def _row(table: pd.DataFrame, **match) -> pd.Series | None:
    part = table
    for key, value in match.items():
        part = part[part[key] == value]
    return None if part.empty else part.iloc[0]


def _compression(table: pd.DataFrame, metric: str, a: str, b: str) -> dict | None:
    row = _row(table, metric=metric, condition=a)
    prefix = "vs_baseline" if b == BASELINE else "vs_original"
    if row is None or f"{prefix}_diff" not in row:
        return None
    sig = row.get(f"{prefix}_sig_holm")
    return {"estimate": row[f"{prefix}_diff"], "ci_low": row[f"{prefix}_ci_low"], "ci_high": row[f"{prefix}_ci_high"],
            "holm": sig, "compared": f"{a} − {b}", **_detail(row, prefix)}


def _detail(row: pd.Series, prefix: str) -> dict:
    """MDD, margin and equivalence of a table row's comparison (absent columns: None)."""
    def get(name):
        value = row.get(f"{prefix}_{name}")
        return None if value is None or (isinstance(value, float) and value != value) else value

    return {"mdd": get("mdd"), "margin": get("margin"), "equivalent": get("equivalent")}


def reading(entry: dict) -> str | None:
    """What a verdict says in words; for 'not significant', equivalence or the detectable size."""
    if entry.get("verdict") != "not significant":
        return None
    if entry.get("equivalent"):
        return f"no evidence for a difference; equivalent within ±{entry['margin']:g}"
    if entry.get("mdd") is not None:
        return (f"no evidence for a difference: too small to see with these seeds (could not detect less than "
                f"±{entry['mdd']:.3g})")
    return "no evidence for a difference"


def _capacity(table: pd.DataFrame, metric: str) -> dict | None:
    curve = table[(table["metric"] == metric) & (table["curve"] == "all") & (table["items"] > 0)]
    if len(curve) < 2 or curve["score"].isna().any():  # a tier without a score (no question scored): untested
        return None
    peak = curve.loc[curve["score"].idxmax()]
    last = curve.iloc[-1]
    if peak["items"] == last["items"]:  # the largest tier is the peak: compare it with the tier before
        before = curve.iloc[-2]
        return {"estimate": -(last["vs_previous_diff"]), "ci_low": -last["vs_previous_ci_high"],
                "ci_high": -last["vs_previous_ci_low"], "holm": None,
                "compared": f"tier {int(before['items'])} − largest tier {int(last['items'])} (the peak)"}
    # interior peak: is the largest tier below it? (peak − last, from their differences to the baseline)
    return {"estimate": peak["score"] - last["score"], "ci_low": None, "ci_high": None, "holm": None,
            "compared": f"peak tier {int(peak['items'])} − largest tier {int(last['items'])}",
            "peak_items": int(peak["items"]), "last_items": int(last["items"])}


def _rank(table: pd.DataFrame, metric: str, condition: str) -> dict | None:
    rows = table[(table["metric"] == metric) & (table["condition"] == condition)]
    if len(rows) < 2:
        return None
    low_rank, top = rows.iloc[0], rows.iloc[-1]
    return {"estimate": low_rank["vs_top_rank_diff"], "ci_low": low_rank["vs_top_rank_ci_low"],
            "ci_high": low_rank["vs_top_rank_ci_high"], "holm": low_rank.get("vs_top_rank_sig_holm"),
            "compared": f"r={int(low_rank['rank'])} − r={int(top['rank'])}", **_detail(low_rank, "vs_top_rank")}


def evaluate_claims(tables: dict[tuple[str, str], pd.DataFrame], kinds: dict[str, str], metrics: dict[str, list[str]],
                    capacity_diffs: dict | None = None, uninformative_judges: set[str] = frozenset()) -> list[dict]:
    """One entry per claim, dataset and metric. `kinds`: dataset -> wiki | longmemeval;
    `capacity_diffs`: (dataset, metric) -> (low, high) interval of peak − largest tier, when computed;
    `uninformative_judges`: datasets whose judge failed its controls (their judge metrics test nothing)."""
    out = []
    for claim_id, kind, text, experiment, a, b, sign in CLAIMS:
        datasets = [d for d, k in kinds.items() if kind in ("any", k)
                    and (kind != "any" or (experiment, d) in tables)]  # a grid claim: where that grid ran
        if not datasets:
            out.append({"claim": claim_id, "text": text, "dataset": None, "metric": None, "verdict": "not tested",
                        "why": f"no {experiment} experiment on a {kind if kind != 'any' else ''} dataset in this run"})
            continue
        for dataset in datasets:
            table = tables.get((experiment, dataset))
            for metric in metrics.get(dataset, []):
                if dataset in uninformative_judges and is_judge_metric(metric):
                    out.append({"claim": claim_id, "text": text, "dataset": dataset, "metric": metric,
                                "verdict": JUDGE_UNINFORMATIVE, "why": "the judge failed its controls on this dataset"})
                    continue
                found = None
                if table is not None and not table.empty:
                    if experiment == "compression":
                        found = _compression(table, metric, a, b)
                    elif experiment == "capacity":
                        found = _capacity(table, metric)
                        if found and found["ci_low"] is None and capacity_diffs:
                            found["ci_low"], found["ci_high"] = capacity_diffs.get((dataset, metric), (None, None))
                    else:
                        found = _rank(table, metric, a)
                entry = {"claim": claim_id, "text": text, "dataset": dataset, "metric": metric,
                         "trr_tested": tested_trr(table, a), "trr_seed": SEED_TRR.get(claim_id)}
                if not found or found["ci_low"] is None:
                    absent = a is not None and table is not None and not table.empty and "condition" in table \
                        and a not in set(table["condition"])
                    entry.update(verdict="not tested", why=f"{a} is not among this run's variants" if absent
                                 else f"no {experiment} cells for it in this run")
                else:
                    entry.update({k: found[k] for k in ("estimate", "ci_low", "ci_high", "compared")},
                                 verdict=verdict(found["ci_low"], found["ci_high"], sign),
                                 holm_significant=found.get("holm"),
                                 **{k: found.get(k) for k in ("mdd", "margin", "equivalent")})
                    entry["reading"] = reading(entry)
                out.append(entry)
    return out


def replicate_spread() -> dict:
    values = PAPER_REPLICATES
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return {"values": list(values), "range": max(values) - min(values), "sd": sd}
