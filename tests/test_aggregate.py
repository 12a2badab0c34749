import pandas as pd
import pytest

from lorapress.aggregate import aggregate, compression_table, run_metrics, scores_table


def long_rows(values: dict[str, float], dataset="wiki", metric="f1"):
    rows = []
    for condition, value in values.items():
        seeds = value if isinstance(value, list) else [value]
        for seed, v in enumerate(seeds):
            rows.append({"dataset": dataset, "experiment": "compression", "condition": condition,
                         "rank": 0 if condition == "baseline" else 8, "items": 0 if condition == "baseline" else "all",
                         "seed": seed, "metric": metric, "value": v, "n": 10})
    return pd.DataFrame(rows)


def test_compression_table_percentages_by_hand():
    scores = long_rows({"baseline": 20.0, "original_text": 40.0, "summ_l3_medium": [28.0, 32.0], "ext": 10.0})
    table = compression_table(scores, "wiki", "f1").set_index("condition")
    assert list(table.index) == ["original_text", "summ_l3_medium", "baseline", "ext"]  # best first
    assert table.loc["summ_l3_medium", "score"] == 30.0  # mean over seeds
    assert table.loc["summ_l3_medium", "vs_baseline_pct"] == pytest.approx(50.0)  # (30-20)/20
    assert table.loc["summ_l3_medium", "vs_original_pct"] == pytest.approx(-25.0)  # (30-40)/40
    assert table.loc["ext", "vs_baseline_pct"] == pytest.approx(-50.0)
    assert table.loc["baseline", "vs_baseline_pct"] == 0.0


def test_zero_baseline_gives_no_percentage():
    table = compression_table(long_rows({"baseline": 0.0, "original_text": 5.0}), "wiki", "f1")
    assert pd.isna(table.set_index("condition").loc["original_text", "vs_baseline_pct"])


def test_aggregate_writes_one_table_per_dataset(tmp_path):
    scores = pd.concat([long_rows({"baseline": 1.0, "original_text": 2.0}),
                        long_rows({"baseline": 1.0, "original_text": 3.0}, dataset="longmemeval")])
    written = aggregate(scores, "f1", tmp_path)
    assert sorted(p.name for p in written) == ["compression_longmemeval.csv", "compression_wiki.csv"]
    assert list(pd.read_csv(tmp_path / "compression_wiki.csv").columns) == [
        "condition", "score", "vs_baseline_pct", "vs_original_pct"]


def test_aggregate_rejects_unknown_metric(tmp_path):
    with pytest.raises(ValueError, match="metric 'bleu' not in"):
        aggregate(long_rows({"baseline": 1.0}), "bleu", tmp_path)


def _records(kind: str, judged: list) -> pd.DataFrame:
    n = len(judged)
    base = {m: [50.0] * n for m in ("rouge1", "rouge2", "rougeL", "bleu", "exact_match", "f1")}
    if kind == "wiki":
        return pd.DataFrame({**base, "question_type": ["wiki"] * n, "abstention": [False] * n, "judge_score": judged})
    types = ["temporal-reasoning", "temporal-reasoning", "knowledge-update", "multi-session"][:n]
    return pd.DataFrame({**base, "question_type": types, "abstention": [False, False, False, True][:n],
                         "judge_correct": judged})


def test_judge_metrics_leave_out_unparsed_and_report_them():
    metrics = {m: (v, n) for m, v, n in run_metrics(_records("wiki", [5, 3, None, 4]))}
    assert metrics["judge_score"] == (4.0, 3)
    assert metrics["judge_unparsed_pct"] == (25.0, 4)


def test_longmemeval_accuracy_per_type_task_average_and_abstention():
    metrics = {m: (v, n) for m, v, n in run_metrics(_records("lme", [1, 0, 1, None]))}
    assert metrics["judge_accuracy"] == (pytest.approx(200 / 3), 3)
    assert metrics["judge_accuracy[temporal-reasoning]"] == (50.0, 2)
    assert metrics["judge_accuracy[knowledge-update]"] == (100.0, 1)
    assert metrics["judge_task_avg_accuracy"][0] == pytest.approx(75.0)  # types with a parsed judgement
    assert "judge_abstention_accuracy" not in metrics  # its only question was unparsed
    assert metrics["judge_unparsed_pct"] == (25.0, 4)


def test_scores_table_repeats_shared_runs_per_experiment():
    predictions = _records("wiki", [5, 4]).assign(run_id=["baseline", "original_text/r8_nall_s0"])
    table = scores_table(predictions, "wiki", [("compression", "baseline"), ("compression", "original_text/r8_nall_s0"),
                                               ("other", "original_text/r8_nall_s0")])
    assert set(table["experiment"]) == {"compression", "other"}
    row = table[(table.metric == "f1") & (table.condition == "original_text") & (table.experiment == "other")]
    assert row[["rank", "items", "seed", "value", "n"]].values.tolist() == [[8, "all", 0, 50.0, 1]]
