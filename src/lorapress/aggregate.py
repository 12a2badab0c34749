"""Stage `aggregate`: evaluation records -> score tables -> the study's answers.

Three layers, each usable on its own:
1. `question_scores` / `scores_table`: per-question records -> the per-question
   table and the long-format `scores.csv` (dataset, experiment, condition,
   rank, items, seed, metric, value, n);
2. `Cells`: a cell is a (condition, rank, items) averaged over seeds; its score
   carries a bootstrap 95% CI over questions (when per-question scores exist)
   and the spread over seeds; a difference between two cells carries a paired
   bootstrap CI and a flag saying whether it excludes zero;
3. the tables (compression, capacity, rank x items, rank x compression) and
   `summary.json` (capacity peak and knee, best condition, the fitted
   rank <-> compression recommendation).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import BASELINE, ORIGINAL, VARIANTS
from .experiments import Run
from .io import atomic_path, write_json

OVERLAP_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "exact_match", "f1")
SCORE_COLUMNS = ["dataset", "experiment", "condition", "rank", "items", "seed", "metric", "value", "n"]
CONTROL_METRICS = {"f1": "control_f1", "exact_match": "control_exact_match"}
# Bands of text reduction for which a rank is recommended (TRR %, lower bound inclusive).
TRR_BANDS = ((0, 30), (30, 60), (60, 80), (80, 100))
N_RESAMPLES = 2000


# ---------------------------------------------------------------- 1. scores
def question_scores(records: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per-question scores of every run, long format; judge verdicts as 0-100, unparsed as NaN."""
    records = records.copy()
    if "question_set" not in records:
        records["question_set"] = "dataset"
    if "judge_correct" in records:
        records["judge_accuracy"] = 100 * records["judge_correct"].astype(float)
    judged = [m for m in ("judge_score", "judge_accuracy") if m in records]
    main = records[records["question_set"] == "dataset"]
    frames = [main.melt(id_vars=["run_id", "question_id", "question_type", "abstention"],
                        value_vars=list(OVERLAP_METRICS) + judged, var_name="metric")]
    control = records[records["question_set"] == "control"]
    if len(control):
        control = control.rename(columns=CONTROL_METRICS)
        frames.append(control.melt(id_vars=["run_id", "question_id", "question_type", "abstention"],
                                   value_vars=list(CONTROL_METRICS.values()), var_name="metric"))
    table = pd.concat(frames, ignore_index=True)
    fields = pd.DataFrame([Run.from_id(dataset, r).fields() | {"run_id": r} for r in table["run_id"].unique()])
    return table.merge(fields, on="run_id")


def run_metrics(qs: pd.DataFrame) -> list[tuple[str, float, int]]:
    """(metric, value, n) of one run from its per-question scores; n counts parsed judgements."""
    rows = []
    for metric, part in qs.groupby("metric", sort=False):
        values = part["value"].astype(float)
        rows.append((metric, values.mean(), int(values.notna().sum())))
        if metric in ("judge_score", "judge_accuracy"):
            rows.append(("judge_unparsed_pct", 100 * values.isna().mean(), len(values)))
        if metric == "judge_accuracy":
            rows += _longmemeval_accuracies(part)
    return rows


def _longmemeval_accuracies(part: pd.DataFrame) -> list[tuple[str, float, int]]:
    """As LongMemEval reports: per type, task-averaged (mean of the types), abstention."""
    parsed = part.dropna(subset=["value"])
    by_type = parsed.groupby("question_type")["value"].agg(["mean", "count"])
    rows = [(f"judge_accuracy[{t}]", r["mean"], int(r["count"])) for t, r in by_type.iterrows()]
    if len(by_type):
        rows.append(("judge_task_avg_accuracy", by_type["mean"].mean(), len(by_type)))
    abstention = parsed[parsed["abstention"].astype(bool)]["value"]
    if len(abstention):
        rows.append(("judge_abstention_accuracy", abstention.mean(), len(abstention)))
    return rows


def scores_table(qs: pd.DataFrame, dataset: str, experiments: list[tuple[str, str]]) -> pd.DataFrame:
    """Long-format scores; a run shared by several experiments appears once per experiment."""
    per_run = {run_id: run_metrics(part) for run_id, part in qs.groupby("run_id", sort=False)}
    rows = []
    for experiment, run_id in experiments:
        if run_id not in per_run:
            raise ValueError(f"{dataset}: no predictions for run {run_id!r} of experiment {experiment!r}")
        fields = Run.from_id(dataset, run_id).fields()
        rows += [{**fields, "experiment": experiment, "metric": m, "value": v, "n": n} for m, v, n in per_run[run_id]]
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


# ---------------------------------------------------------------- 2. cells
def _pct(score: float, reference: float) -> float:
    return 100.0 * (score - reference) / reference if reference else float("nan")


def _items_key(items) -> str:
    return str(items)


class Cells:
    """Scores of (condition, rank, items) cells of one dataset and metric, averaged over seeds."""

    def __init__(self, scores: pd.DataFrame, dataset: str, metric: str, qs: pd.DataFrame | None = None, seed: int = 0):
        part = scores[(scores["dataset"] == dataset) & (scores["metric"] == metric)].copy()
        part["items"] = part["items"].map(_items_key)
        self.runs = part.drop_duplicates(["condition", "rank", "items", "seed"])
        self.qs = None
        if qs is not None and len(qs):
            q = qs[(qs["dataset"] == dataset) & (qs["metric"] == metric)].copy()
            q["items"] = q["items"].map(_items_key)
            self.qs = q
        self.rng = np.random.default_rng(seed)

    def _key(self, condition: str, rank: int, items) -> tuple:
        if condition == BASELINE:
            return BASELINE, 0, "0"
        return condition, int(rank), _items_key(items)

    def has(self, condition: str, rank: int = 0, items="all") -> bool:
        c, r, i = self._key(condition, rank, items)
        return bool(((self.runs["condition"] == c) & (self.runs["rank"] == r) & (self.runs["items"] == i)).any())

    def _questions(self, condition: str, rank: int = 0, items="all") -> pd.Series | None:
        """Per-question values averaged over seeds (NaN judgements left out)."""
        if self.qs is None:
            return None
        c, r, i = self._key(condition, rank, items)
        part = self.qs[(self.qs["condition"] == c) & (self.qs["rank"] == r) & (self.qs["items"] == i)]
        return part.groupby("question_id")["value"].mean().dropna() if len(part) else None

    def _bootstrap(self, statistic, *samples) -> tuple[float, float]:
        from scipy.stats import bootstrap

        if len(samples[0]) < 2 or all(np.ptp(s) == 0 for s in samples):
            value = statistic(*samples, axis=-1)
            return float(value), float(value)
        result = bootstrap(samples, statistic, paired=len(samples) > 1, vectorized=True, n_resamples=N_RESAMPLES,
                           confidence_level=0.95, method="percentile", random_state=self.rng)
        return float(result.confidence_interval.low), float(result.confidence_interval.high)

    def score(self, condition: str, rank: int = 0, items="all") -> dict:
        c, r, i = self._key(condition, rank, items)
        runs = self.runs[(self.runs["condition"] == c) & (self.runs["rank"] == r) & (self.runs["items"] == i)]
        values = runs["value"].astype(float)
        cell = {"score": values.mean(), "seed_sd": values.std(ddof=1) if len(values) > 1 else float("nan"),
                "n_seeds": len(values), "n": int(runs["n"].max()) if len(runs) else 0,
                "ci_low": float("nan"), "ci_high": float("nan")}
        questions = self._questions(condition, rank, items)
        if questions is not None and len(questions):
            cell["ci_low"], cell["ci_high"] = self._bootstrap(lambda x, axis: x.mean(axis=axis), questions.values)
        return cell

    def delta(self, a: tuple, b: tuple) -> dict:
        """Cell a minus cell b: points, % of b, paired bootstrap CI of the points, and significance."""
        sa, sb = self.score(*a)["score"], self.score(*b)["score"]
        out = {"diff": sa - sb, "pct": _pct(sa, sb), "ci_low": float("nan"), "ci_high": float("nan"), "sig": None}
        qa, qb = self._questions(*a), self._questions(*b)
        if qa is not None and qb is not None:
            common = qa.index.intersection(qb.index)
            if len(common):
                lo, hi = self._bootstrap(lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis),
                                         qa[common].values, qb[common].values)
                out.update(ci_low=lo, ci_high=hi, sig=bool(lo > 0 or hi < 0))
        return out


# ---------------------------------------------------------------- 3. tables
def _lead(table: pd.DataFrame, first: list[str]) -> pd.DataFrame:
    """The documented columns first, in their documented order; CIs and flags after."""
    return table[[c for c in first if c in table] + [c for c in table.columns if c not in first]]


def _cell_columns(cell: dict) -> dict:
    return {"score": cell["score"], "ci_low": cell["ci_low"], "ci_high": cell["ci_high"],
            "seed_sd": cell["seed_sd"], "n": cell["n"]}


def _delta_columns(prefix: str, delta: dict, pct: bool = True) -> dict:
    columns = {f"{prefix}_pct": delta["pct"]} if pct else {prefix: delta["diff"]}
    if pct:
        columns[f"{prefix}_diff"] = delta["diff"]
    columns.update({f"{prefix}_ci_low": delta["ci_low"], f"{prefix}_ci_high": delta["ci_high"],
                    f"{prefix}_sig": delta["sig"]})
    return columns


def _experiment_runs(scores: pd.DataFrame, dataset: str, experiment: str) -> pd.DataFrame:
    return scores[(scores["dataset"] == dataset) & (scores["experiment"] == experiment)].drop_duplicates(
        ["condition", "rank", "items", "seed"])


def compression_table(scores: pd.DataFrame, dataset: str, metric: str, qs=None, control=None) -> pd.DataFrame:
    """condition, score, vs_baseline_pct, vs_original_pct (+ CIs, flags, forgetting); best first."""
    cells = Cells(scores, dataset, metric, qs)
    runs = _experiment_runs(scores, dataset, "compression")
    rank_of = runs[runs["condition"] != BASELINE]["rank"]
    rank = int(rank_of.iloc[0]) if len(rank_of) else 0
    has_original = cells.has(ORIGINAL, rank, "all")
    rows = []
    for condition in dict.fromkeys(runs["condition"]):
        key = (condition, rank, "all")
        row = {"condition": condition, **_cell_columns(cells.score(*key))}
        base = cells.delta(key, (BASELINE,))
        orig = cells.delta(key, (ORIGINAL, rank, "all")) if has_original else {}
        row["vs_baseline_pct"] = base["pct"]
        row["vs_original_pct"] = orig.get("pct", float("nan"))
        row.update({k: v for k, v in _delta_columns("vs_baseline", base).items() if k != "vs_baseline_pct"})
        if orig:
            row.update({k: v for k, v in _delta_columns("vs_original", orig).items() if k != "vs_original_pct"})
        if control is not None:
            row["control_drop"] = control.delta(key, (BASELINE,))["diff"]
        rows.append(row)
    table = _lead(pd.DataFrame(rows), ["condition", "score", "vs_baseline_pct", "vs_original_pct"])
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True) if rows else table


def capacity_table(scores: pd.DataFrame, dataset: str, metric: str, qs=None) -> pd.DataFrame:
    """items, score, vs_baseline_pct, vs_previous (points over the previous tier); items 0 = baseline."""
    cells = Cells(scores, dataset, metric, qs)
    runs = _experiment_runs(scores, dataset, "capacity")
    trained = runs[runs["condition"] != BASELINE]
    if trained.empty:
        return pd.DataFrame(columns=["items", "score", "vs_baseline_pct", "vs_previous"])
    rank = int(trained["rank"].iloc[0])
    tiers = [(0, (BASELINE,))] + [(int(n), (ORIGINAL, rank, n)) for n in sorted({int(i) for i in trained["items"]})]
    rows, previous = [], None
    for items, key in tiers:
        base = cells.delta(key, (BASELINE,))
        row = {"items": items, **_cell_columns(cells.score(*key)), "vs_baseline_pct": base["pct"],
               "vs_baseline_sig": base["sig"]}
        if previous is None:
            row.update(vs_previous=float("nan"), vs_previous_ci_low=float("nan"), vs_previous_ci_high=float("nan"),
                       vs_previous_sig=None)
        else:
            row.update(_delta_columns("vs_previous", cells.delta(key, previous), pct=False))
        rows.append(row)
        previous = key
    return _lead(pd.DataFrame(rows), ["items", "score", "vs_baseline_pct", "vs_previous"])


def rank_table(scores: pd.DataFrame, dataset: str, metric: str, experiment: str, qs=None, trr=None) -> pd.DataFrame:
    """One row per items (rank_items) or condition (rank_compression), one score column per rank."""
    cells = Cells(scores, dataset, metric, qs)
    runs = _experiment_runs(scores, dataset, experiment)
    trained = runs[runs["condition"] != BASELINE]
    if trained.empty:
        return pd.DataFrame()
    ranks = sorted({int(r) for r in trained["rank"]})
    if experiment == "rank_items":
        row_keys = [("items", int(n), lambda r, n=n: (ORIGINAL, r, n)) for n in sorted({int(i) for i in trained["items"]})]
    else:
        order = [v for v in VARIANTS if v in set(trained["condition"])]
        row_keys = [("condition", v, lambda r, v=v: (v, r, "all")) for v in order]
    rows = []
    for column, value, key_of in row_keys:
        row = {column: value}
        if experiment == "rank_compression" and trr is not None:
            row["trr_mean"] = trr.get(value, float("nan"))
        for r in ranks:
            cell = cells.score(*key_of(r))
            row[f"rank_{r}"] = cell["score"]
            row[f"rank_{r}_ci_low"], row[f"rank_{r}_ci_high"] = cell["ci_low"], cell["ci_high"]
        rows.append(row)
    table = pd.DataFrame(rows)
    score_columns = [f"rank_{r}" for r in ranks]
    ci_columns = [c for c in table.columns if c.endswith(("_ci_low", "_ci_high"))]
    return table[[c for c in table.columns if c not in score_columns + ci_columns] + score_columns + ci_columns]


# ---------------------------------------------------------------- 4. summary
def capacity_knee(items: list[float], scores: list[float]) -> float | None:
    """Where adding items stops paying off: the knee (kneed) of the rising part of the curve.

    Only the points up to the peak count; a curve that never rises above its start has no knee.
    """
    from kneed import KneeLocator

    peak = int(np.argmax(scores))
    items, scores = list(items)[:peak + 1], list(scores)[:peak + 1]
    if len(items) < 3:
        return None
    knee = KneeLocator(items, scores, curve="concave", direction="increasing", S=1.0).knee
    return None if knee is None else float(knee)


def fit_rank_recommendation(table: pd.DataFrame) -> dict:
    """Fit score = a + b·log2(rank) + c·TRR + d·log2(rank)·TRR on the rank x compression grid.

    The gain of doubling the rank at a given TRR is b + d·TRR; each TRR band
    gets the rank with the highest predicted score at its midpoint.
    """
    from sklearn.linear_model import LinearRegression

    rank_columns = [c for c in table.columns if c.startswith("rank_") and c.split("_")[1].isdigit() and c.count("_") == 1]
    if table.empty or "trr_mean" not in table or len(rank_columns) < 2:
        return {"available": False, "reason": "needs the rank_compression grid with at least two ranks and TRR"}
    points = [(math.log2(int(c.split("_")[1])), t, s) for c in rank_columns
              for t, s in zip(table["trr_mean"], table[c]) if not (math.isnan(t) or math.isnan(s))]
    if len(points) < 5 or len({p[1] for p in points}) < 2:
        return {"available": False, "reason": f"too few points to fit 4 coefficients ({len(points)})"}
    x = np.array([[lr, t, lr * t] for lr, t, _ in points])
    y = np.array([s for _, _, s in points])
    model = LinearRegression().fit(x, y)
    b, c, d = model.coef_
    ranks = sorted(int(col.split("_")[1]) for col in rank_columns)
    bands = []
    for low, high in TRR_BANDS:
        mid = (low + high) / 2
        predicted = {r: float(model.predict([[math.log2(r), mid, math.log2(r) * mid]])[0]) for r in ranks}
        bands.append({"trr_band": f"{low}-{high}", "trr_mid": mid, "recommended_rank": max(predicted, key=predicted.get),
                      "predicted_scores": predicted, "gain_per_rank_doubling": float(b + d * mid)})
    return {
        "available": True,
        "relation": "score = a + b*log2(rank) + c*TRR + d*log2(rank)*TRR",
        "coefficients": {"a": float(model.intercept_), "b": float(b), "c": float(c), "d": float(d)},
        "r2": float(model.score(x, y)),
        "n_points": len(points),
        "ranks": ranks,
        "bands": bands,
    }


def dataset_summary(tables: dict[str, pd.DataFrame], metric: str) -> dict:
    summary: dict = {"metric": metric}
    capacity = tables.get("capacity")
    if capacity is not None and len(capacity) > 1:
        summary["capacity_peak_items"] = int(capacity.loc[capacity["score"].idxmax(), "items"])
        summary["capacity_knee_items"] = capacity_knee(capacity["items"].tolist(), capacity["score"].tolist())
    compression = tables.get("compression")
    if compression is not None and len(compression):
        trained = compression[compression["condition"] != BASELINE]
        if len(trained):
            best = trained.iloc[0]
            summary["best_condition"] = best["condition"]
            summary["best_condition_score"] = float(best["score"])
            summary["best_condition_vs_baseline_sig"] = best.get("vs_baseline_sig")
    summary["rank_recommendation"] = fit_rank_recommendation(tables.get("rank_compression", pd.DataFrame()))
    return summary


# ---------------------------------------------------------------- write
def _jsonable(obj):
    """Plain JSON values: numpy scalars to Python, NaN and NA to null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is pd.NA or (isinstance(obj, float) and math.isnan(obj)):
        return None
    return obj


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")


def aggregate(scores: pd.DataFrame, metric: str, out_dir: str | Path, qs: pd.DataFrame | None = None,
              trr: pd.DataFrame | None = None) -> list[Path]:
    """Write every derived table per dataset, and summary.json."""
    missing = set(SCORE_COLUMNS) - set(scores.columns)
    if missing:
        raise ValueError(f"scores table lacks columns {sorted(missing)}")
    if metric not in set(scores["metric"]):
        raise ValueError(f"metric {metric!r} not in the scores table; present: {sorted(set(scores['metric']))}")
    out_dir = Path(out_dir)
    written, summary = [], {}
    for dataset in sorted(scores["dataset"].unique()):
        trr_of = None
        if trr is not None:
            trr_of = trr[trr["dataset"] == dataset].set_index("variant")["trr_mean"].to_dict()
        control = None
        control_metric = CONTROL_METRICS.get(metric, "control_f1")
        if control_metric in set(scores["metric"]):
            control = Cells(scores, dataset, control_metric, qs)
        tables = {"compression": compression_table(scores, dataset, metric, qs, control),
                  "capacity": capacity_table(scores, dataset, metric, qs),
                  "rank_items": rank_table(scores, dataset, metric, "rank_items", qs),
                  "rank_compression": rank_table(scores, dataset, metric, "rank_compression", qs, trr_of)}
        present = set(scores.loc[scores["dataset"] == dataset, "experiment"])
        for name, table in tables.items():
            if name == "compression" or name in present:
                path = out_dir / f"{name}_{dataset}.csv"
                write_csv(table, path)
                written.append(path)
        summary[dataset] = dataset_summary(tables, metric)
    path = out_dir / "summary.json"
    write_json(path, _jsonable(summary))
    written.append(path)
    return written
