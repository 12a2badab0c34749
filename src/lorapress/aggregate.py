"""Stage `aggregate`: per-question evaluation records -> score tables.

`scores_table` turns predictions into the long-format `scores.csv`
(dataset, experiment, condition, rank, items, seed, metric, value, n).
`compression_table` and friends read only that table, so
`lorapress aggregate --scores FILE` works on any scores CSV.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import BASELINE, ORIGINAL
from .experiments import Run
from .io import atomic_path

OVERLAP_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "exact_match", "f1")
SCORE_COLUMNS = ["dataset", "experiment", "condition", "rank", "items", "seed", "metric", "value", "n"]


def run_metrics(records: pd.DataFrame) -> list[tuple[str, float, int]]:
    """(metric, value, n) for one run's per-question records."""
    rows = [(m, records[m].mean(), len(records)) for m in OVERLAP_METRICS]
    if records["question_type"].eq("wiki").all():
        return rows + _judge_score_metrics(records)
    return rows + _judge_accuracy_metrics(records)


def _judge_score_metrics(records: pd.DataFrame) -> list[tuple[str, float, int]]:
    """Mean 1-5 judge score over parsed judgements, and the unparsed share."""
    parsed = records["judge_score"].dropna()
    return [
        ("judge_score", parsed.mean() if len(parsed) else float("nan"), len(parsed)),
        ("judge_unparsed_pct", 100 * records["judge_score"].isna().mean(), len(records)),
    ]


def _judge_accuracy_metrics(records: pd.DataFrame) -> list[tuple[str, float, int]]:
    """LongMemEval's reporting: overall, per-type, task-averaged and abstention accuracy (%)."""
    parsed = records.dropna(subset=["judge_correct"])
    correct = 100 * parsed["judge_correct"].astype(float)
    rows = [("judge_accuracy", correct.mean() if len(parsed) else float("nan"), len(parsed))]
    by_type = correct.groupby(parsed["question_type"]).agg(["mean", "count"])
    rows += [(f"judge_accuracy[{t}]", r["mean"], int(r["count"])) for t, r in by_type.iterrows()]
    if len(by_type):
        rows.append(("judge_task_avg_accuracy", by_type["mean"].mean(), len(by_type)))
    abstention = correct[parsed["abstention"].astype(bool)]
    if len(abstention):
        rows.append(("judge_abstention_accuracy", abstention.mean(), len(abstention)))
    rows.append(("judge_unparsed_pct", 100 * records["judge_correct"].isna().mean(), len(records)))
    return rows


def scores_table(predictions: pd.DataFrame, dataset: str, experiments: list[tuple[str, str]]) -> pd.DataFrame:
    """Long-format scores of one dataset; `experiments` pairs each experiment with its run ids."""
    per_run = {}
    for run_id, records in predictions.groupby("run_id", sort=False):
        per_run[run_id] = run_metrics(records)
    rows = []
    for experiment, run_id in experiments:
        if run_id not in per_run:
            raise ValueError(f"{dataset}: no predictions for run {run_id!r} of experiment {experiment!r}")
        fields = Run.from_id(dataset, run_id).fields()
        for metric, value, n in per_run[run_id]:
            rows.append({**fields, "experiment": experiment, "metric": metric, "value": value, "n": n})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def _pct(score: float, reference: float) -> float:
    return 100.0 * (score - reference) / reference if reference else float("nan")


def compression_table(scores: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    """condition, score, vs_baseline_pct, vs_original_pct: mean over seeds, best first."""
    part = scores[(scores["dataset"] == dataset) & (scores["metric"] == metric)
                  & (scores["experiment"] == "compression")]
    means = part.groupby("condition")["value"].mean()
    baseline = means.get(BASELINE, float("nan"))
    original = means.get(ORIGINAL, float("nan"))
    table = pd.DataFrame({"condition": means.index, "score": means.values})
    table["vs_baseline_pct"] = [_pct(s, baseline) for s in table["score"]]
    table["vs_original_pct"] = [_pct(s, original) for s in table["score"]]
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")


def aggregate(scores: pd.DataFrame, metric: str, out_dir: str | Path) -> list[Path]:
    """Write the per-dataset tables derived from a long-format scores table."""
    missing = set(SCORE_COLUMNS) - set(scores.columns)
    if missing:
        raise ValueError(f"scores table lacks columns {sorted(missing)}")
    if metric not in set(scores["metric"]):
        raise ValueError(f"metric {metric!r} not in the scores table; present: {sorted(set(scores['metric']))}")
    out_dir = Path(out_dir)
    written = []
    for dataset in sorted(scores["dataset"].unique()):
        path = out_dir / f"compression_{dataset}.csv"
        write_csv(compression_table(scores, dataset, metric), path)
        written.append(path)
    return written
