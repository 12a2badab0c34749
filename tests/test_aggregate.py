"""`lorapress aggregate` pinned on hand-computed examples."""

import json

import numpy as np
import pandas as pd
import pytest

from lorapress.aggregate import (
    aggregate, capacity_knee, capacity_table, compression_table, fit_rank_recommendation,
    question_scores, rank_table, run_metrics, scores_table,
)

COLUMNS = ["dataset", "experiment", "condition", "rank", "items", "seed", "metric", "value", "n"]


def row(condition, value, experiment="compression", rank=8, items="all", seed=0, metric="f1", dataset="wiki"):
    if condition == "baseline":
        rank, items = 0, 0
    return dict(zip(COLUMNS, [dataset, experiment, condition, rank, items, seed, metric, value, 10]))


def test_compression_percentages_by_hand():
    scores = pd.DataFrame([row("baseline", 20.0), row("original_text", 40.0), row("summ_l3_medium", 28.0),
                           row("summ_l3_medium", 32.0, seed=1), row("ext", 10.0)])
    table = compression_table(scores, "wiki", "f1").set_index("condition")
    assert list(table.index) == ["original_text", "summ_l3_medium", "baseline", "ext"]  # best first
    assert table.loc["summ_l3_medium", "score"] == 30.0  # mean over seeds
    assert table.loc["summ_l3_medium", "seed_sd"] == pytest.approx(np.std([28, 32], ddof=1))
    assert table.loc["summ_l3_medium", "vs_baseline_pct"] == pytest.approx(50.0)  # (30-20)/20
    assert table.loc["summ_l3_medium", "vs_original_pct"] == pytest.approx(-25.0)  # (30-40)/40
    assert table.loc["ext", "vs_baseline_pct"] == pytest.approx(-50.0)
    assert table.loc["baseline", "vs_baseline_pct"] == 0.0
    assert list(table.reset_index().columns[:4]) == ["condition", "score", "vs_baseline_pct", "vs_original_pct"]


def test_zero_baseline_gives_no_percentage():
    table = compression_table(pd.DataFrame([row("baseline", 0.0), row("original_text", 5.0)]), "wiki", "f1")
    assert pd.isna(table.set_index("condition").loc["original_text", "vs_baseline_pct"])


def test_capacity_previous_tier_deltas_peak_and_knee(tmp_path):
    curve = {4: 20.0, 8: 30.0, 16: 34.0, 32: 35.0}
    scores = pd.DataFrame([row("baseline", 10.0, "capacity")] +
                          [row("original_text", v, "capacity", items=n) for n, v in curve.items()])
    table = capacity_table(scores, "wiki", "f1")
    assert table["items"].tolist() == [0, 4, 8, 16, 32]
    assert table["vs_previous"].tolist()[1:] == [10.0, 10.0, 4.0, 1.0]
    assert table["vs_baseline_pct"].tolist() == [0.0, 100.0, 200.0, 240.0, 250.0]
    aggregate(scores, "f1", tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())["wiki"]
    assert summary["capacity_peak_items"] == 32
    assert summary["capacity_knee_items"] == 8.0  # kneed on 0,4,8,16,32 -> 10,20,30,34,35


def test_knee_needs_three_points():
    assert capacity_knee([0, 10], [1, 2]) is None


def test_rank_tables_have_one_score_column_per_rank():
    scores = pd.DataFrame([row("baseline", 1.0, "rank_items")] + [
        row("original_text", 10 * r + n, "rank_items", rank=r, items=n) for r in (4, 16) for n in (100, 300)])
    table = rank_table(scores, "wiki", "f1", "rank_items")
    assert table["items"].tolist() == [100, 300]
    assert table["rank_4"].tolist() == [140.0, 340.0] and table["rank_16"].tolist() == [260.0, 460.0]
    assert list(table.columns[:3]) == ["items", "rank_4", "rank_16"]


def test_rank_recommendation_recovers_a_known_relation():
    # score = 10 + 2*log2(r) - 0.1*TRR + 0.05*log2(r)*TRR: higher ranks pay off as TRR rises past 40
    trr = {"original_text": 0.0, "summ_l3_medium": 60.0, "summ_l5_extreme": 90.0}
    rows = []
    for variant, t in trr.items():
        for r in (4, 16):
            rows.append({"condition": variant, "trr_mean": t,
                         f"rank_{r}": 10 + 2 * np.log2(r) - 0.1 * t + 0.05 * np.log2(r) * t})
    table = pd.DataFrame(rows).groupby(["condition", "trr_mean"]).first().reset_index()
    fit = fit_rank_recommendation(table)
    assert fit["available"] and fit["r2"] == pytest.approx(1.0)
    assert fit["coefficients"]["b"] == pytest.approx(2.0) and fit["coefficients"]["d"] == pytest.approx(0.05)
    assert [b["recommended_rank"] for b in fit["bands"]] == [16, 16, 16, 16]
    assert fit["bands"][0]["gain_per_rank_doubling"] == pytest.approx(2 + 0.05 * 15)


def test_rank_recommendation_says_why_it_is_missing():
    assert fit_rank_recommendation(pd.DataFrame())["available"] is False


def per_question(run_id, values, metric="f1"):
    return pd.DataFrame({"run_id": run_id, "question_id": [f"q{i}" for i in range(len(values))], "metric": metric,
                         "value": values, "question_type": "wiki", "abstention": False, "dataset": "wiki"})


def test_bootstrap_ci_and_significance_flags():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 20, 60)
    records = pd.concat([per_question("baseline", base), per_question("original_text/r8_nall_s0", base + 30),
                         per_question("ext/r8_nall_s0", base + rng.normal(0, 1, 60))])
    qs = records.merge(pd.DataFrame([{"run_id": "baseline", "condition": "baseline", "rank": 0, "items": 0, "seed": 0},
                                     {"run_id": "original_text/r8_nall_s0", "condition": "original_text", "rank": 8,
                                      "items": "all", "seed": 0},
                                     {"run_id": "ext/r8_nall_s0", "condition": "ext", "rank": 8, "items": "all",
                                      "seed": 0}]), on="run_id")
    scores = scores_table(qs, "wiki", [("compression", r) for r in qs["run_id"].unique()])
    table = compression_table(scores, "wiki", "f1", qs).set_index("condition")
    orig = table.loc["original_text"]
    assert orig["ci_low"] < orig["score"] < orig["ci_high"]
    assert orig["vs_baseline_diff"] == pytest.approx(30.0)
    assert orig["vs_baseline_ci_low"] == pytest.approx(30.0) and orig["vs_baseline_sig"] == True  # noqa: E712
    assert table.loc["ext", "vs_baseline_sig"] == False  # noqa: E712  noise around zero


def test_judge_metrics_leave_out_unparsed_and_report_them():
    qs = per_question("baseline", [5, 3, None, 4], metric="judge_score")
    metrics = {m: (v, n) for m, v, n in run_metrics(qs)}
    assert metrics["judge_score"] == (4.0, 3)
    assert metrics["judge_unparsed_pct"] == (25.0, 4)


def test_longmemeval_accuracy_per_type_task_average_and_abstention():
    records = pd.DataFrame({
        "run_id": "baseline", "question_id": ["a", "b", "c", "d_abs"], "question_set": "dataset",
        "question_type": ["temporal-reasoning", "temporal-reasoning", "knowledge-update", "multi-session"],
        "abstention": [False, False, False, True], "judge_correct": [1, 0, 1, None],
        **{m: [50.0] * 4 for m in ("rouge1", "rouge2", "rougeL", "bleu", "exact_match", "f1")}})
    metrics = {m: (v, n) for m, v, n in run_metrics(question_scores(records, "longmemeval"))}
    assert metrics["judge_accuracy"] == (pytest.approx(200 / 3), 3)
    assert metrics["judge_accuracy[temporal-reasoning]"] == (50.0, 2)
    assert metrics["judge_accuracy[knowledge-update]"] == (100.0, 1)
    assert metrics["judge_task_avg_accuracy"][0] == pytest.approx(75.0)  # mean over types with a verdict
    assert "judge_abstention_accuracy" not in metrics  # its only question was unparsed
    assert metrics["judge_unparsed_pct"] == (25.0, 4)


def test_scores_table_repeats_shared_runs_per_experiment():
    qs = pd.concat([per_question("baseline", [10.0, 20.0]), per_question("original_text/r8_nall_s0", [30.0, 50.0])])
    qs = qs.merge(pd.DataFrame([{"run_id": "baseline", "condition": "baseline", "rank": 0, "items": 0, "seed": 0},
                                {"run_id": "original_text/r8_nall_s0", "condition": "original_text", "rank": 8,
                                 "items": "all", "seed": 0}]), on="run_id")
    table = scores_table(qs, "wiki", [("compression", "baseline"), ("compression", "original_text/r8_nall_s0"),
                                      ("rank_compression", "original_text/r8_nall_s0")])
    assert set(table["experiment"]) == {"compression", "rank_compression"}
    shared = table[(table.condition == "original_text") & (table.metric == "f1")]
    assert shared["value"].tolist() == [40.0, 40.0]


def test_aggregate_rejects_unknown_metric(tmp_path):
    with pytest.raises(ValueError, match="metric 'bleu' not in"):
        aggregate(pd.DataFrame([row("baseline", 1.0)]), "bleu", tmp_path)


def test_forgetting_is_the_control_change_against_baseline(tmp_path):
    scores = pd.DataFrame([row("baseline", 10.0), row("original_text", 20.0),
                           row("baseline", 60.0, metric="control_f1"), row("original_text", 45.0, metric="control_f1")])
    aggregate(scores, "f1", tmp_path)
    table = pd.read_csv(tmp_path / "compression_wiki.csv").set_index("condition")
    assert table.loc["original_text", "control_drop"] == -15.0 and table.loc["baseline", "control_drop"] == 0.0


def test_knee_ignores_the_curve_after_its_peak_and_flat_starts():
    assert capacity_knee([0, 4, 8, 16, 32, 64], [10, 20, 30, 34, 35, 20]) == 8.0
    assert capacity_knee([0, 4, 8, 16], [10, 9, 8, 7]) is None  # never rises: no knee
