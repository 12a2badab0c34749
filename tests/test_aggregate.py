"""`lorapress aggregate` pinned on hand-computed and simulated examples."""

import json

import numpy as np
import pandas as pd
import pytest

from lorapress.aggregate import (
    Settings, Study, best_condition, capacity_knee, capacity_table, compression_table, curve_summary, question_scores,
    rank_table,
    run_metrics, run_scores, standalone, trained_questions,
)
from lorapress.uncertainty import Bootstrap

COLUMNS = ["dataset", "experiment", "condition", "rank", "items", "seed", "metric", "value", "n"]
BOOT = Bootstrap(1000, 0.95, 0)
SETTINGS = Settings(metrics=["f1"], n_resamples=1000, confidence=0.95, seed=0, inert_tolerance=1e-3,
                    equivalence_margins={"f1": 2.0})


def row(condition, value, experiment="compression", rank=8, items="all", seed=0, metric="f1", dataset="wiki"):
    if condition == "baseline":
        rank, items = 0, 0
    return dict(zip(COLUMNS, [dataset, experiment, condition, rank, items, seed, metric, value, 10]))


def by_condition(table, metric="f1"):
    return table[table["metric"] == metric].set_index("condition")


def test_compression_differences_by_hand():
    scores = pd.DataFrame([row("baseline", 20.0), row("original_text", 40.0), row("summ_l3_medium", 28.0),
                           row("summ_l3_medium", 32.0, seed=1), row("ext", 10.0)])
    table = by_condition(compression_table(Study(scores, "wiki", BOOT), ["f1"]))
    assert list(table.index) == ["baseline", "original_text", "summ_l3_medium", "ext"]  # the study's order
    l3 = table.loc["summ_l3_medium"]
    assert l3["score"] == 30.0 and l3["seed_sd"] == pytest.approx(np.std([28, 32], ddof=1))  # mean over seeds
    assert l3["vs_baseline_diff"] == 10.0 and l3["vs_baseline_pct"] == pytest.approx(50.0)
    assert l3["vs_original_diff"] == -10.0 and l3["vs_original_pct"] == pytest.approx(-25.0)
    assert table.loc["ext", "vs_baseline_pct"] == pytest.approx(-50.0)
    # one run a side and no per-question scores: nothing to resample, so no interval and no flag
    assert np.isnan(table.loc["ext", "vs_baseline_ci_low"]) and table.loc["ext", "vs_baseline_sig"] is None


def per_question(run_id, values, metric="f1", qtype="wiki"):
    return pd.DataFrame({"run_id": run_id, "question_id": [f"q{i}" for i in range(len(values))], "metric": metric,
                         "value": values, "question_type": qtype, "abstention": False, "question_set": "dataset",
                         "dataset": "wiki"})


FIELDS = {"baseline": ("baseline", 0, 0, 0), "original_text/r8_nall_s0": ("original_text", 8, "all", 0),
          "ext/r8_nall_s0": ("ext", 8, "all", 0), "summ_l1_slight/r8_nall_s0": ("summ_l1_slight", 8, "all", 0)}


def with_fields(frame):
    fields = pd.DataFrame([{"run_id": r, "condition": c, "rank": k, "items": i, "seed": s}
                           for r, (c, k, i, s) in FIELDS.items()])
    return frame.merge(fields, on="run_id")


def test_intervals_flags_and_holm_on_per_question_scores():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 20, 60)
    qs = with_fields(pd.concat([per_question("baseline", base), per_question("original_text/r8_nall_s0", base + 30),
                                per_question("ext/r8_nall_s0", base + rng.normal(0, 1, 60)),
                                per_question("summ_l1_slight/r8_nall_s0", base + 0.6 + rng.normal(0, 1, 60))]))
    scores = run_scores(qs, "wiki", [("compression", r) for r in FIELDS])
    table = by_condition(compression_table(Study(scores, "wiki", BOOT, qs), ["f1"]))
    orig = table.loc["original_text"]
    assert orig["ci_low"] < orig["score"] < orig["ci_high"] and orig["n_questions"] == 60
    assert orig["vs_baseline_diff"] == pytest.approx(30.0) and orig["vs_baseline_ci_low"] == pytest.approx(30.0)
    assert orig["vs_baseline_sig"] and orig["vs_baseline_sig_holm"]
    assert not table.loc["ext", "vs_baseline_sig"]  # noise around zero
    assert table.loc["baseline", "vs_baseline_sig"] is None  # no comparison with itself
    assert {"vs_baseline_sig_holm", "vs_original_sig_holm", "vs_baseline_p"} <= set(table.columns)


def test_delta_and_interval_share_their_questions_when_judgements_are_missing():
    a = per_question("original_text/r8_nall_s0", [5, 5, np.nan, np.nan, 5, 5], metric="judge_score")
    b = per_question("baseline", [1, 1, 5, 5, 1, 1], metric="judge_score")
    qs = with_fields(pd.concat([a, b]))
    scores = run_scores(qs, "wiki", [("compression", "baseline"), ("compression", "original_text/r8_nall_s0")])
    table = by_condition(compression_table(Study(scores, "wiki", BOOT, qs), ["judge_score"]), "judge_score")
    orig = table.loc["original_text"]
    assert orig["vs_baseline_diff"] == pytest.approx(4.0)  # on the 4 questions both have, not 5 - 2.33
    assert orig["vs_baseline_ci_low"] == pytest.approx(4.0) and orig["vs_baseline_ci_high"] == pytest.approx(4.0)


def test_zero_baseline_keeps_its_difference_interval_and_flag():
    qs = with_fields(pd.concat([per_question("baseline", [0.0] * 30),
                                per_question("original_text/r8_nall_s0", [0.0, 10.0, 20.0] * 10)]))
    scores = run_scores(qs, "wiki", [("compression", "baseline"), ("compression", "original_text/r8_nall_s0")])
    orig = by_condition(compression_table(Study(scores, "wiki", BOOT, qs), ["f1"])).loc["original_text"]
    assert np.isnan(orig["vs_baseline_pct"]) and orig["vs_baseline_diff"] == pytest.approx(10.0)
    assert orig["vs_baseline_ci_low"] > 0 and orig["vs_baseline_sig"]


def capacity_scores(curve, baseline=10.0):
    return pd.DataFrame([row("baseline", baseline, "capacity")] +
                        [row("original_text", v, "capacity", items=n) for n, v in curve.items()])


def test_capacity_previous_tier_deltas_peak_and_knee():
    curve = {4: 20.0, 8: 30.0, 16: 34.0, 32: 35.0}
    study = Study(capacity_scores(curve), "wiki", BOOT)
    table = capacity_table(study, ["f1"])
    assert table["items"].tolist() == [0, 4, 8, 16, 32] and set(table["curve"]) == {"all"}
    assert table["vs_previous_diff"].tolist()[1:] == [10.0, 10.0, 4.0, 1.0]
    assert table["vs_baseline_pct"].tolist() == [0.0, 100.0, 200.0, 240.0, 250.0]
    summary = curve_summary(study, "f1", "all")
    assert summary["peak_items"] == 32
    assert summary["knee_items"] == 8.0  # kneed on the trained tiers 4, 8, 16, 32 -> 20, 30, 34, 35


def test_knee_on_trained_tiers_only():
    assert capacity_knee([0, 10], [1, 2]) is None
    assert capacity_knee([0, 4, 8, 16, 32, 64], [10, 20, 30, 34, 35, 20]) == 8.0  # after the peak: ignored
    assert capacity_knee([0, 4, 8, 16], [10, 9, 8, 7]) is None  # never rises: no knee


def test_retention_curve_scores_each_tier_on_its_own_items():
    """Old: every tier on the full question set, so the curve rose as more items were simply covered."""
    items = [f"a{i}" for i in range(4)]
    question_items = {f"q{i}": [items[i]] for i in range(4)}
    assert trained_questions(question_items, items, 2) == {"q0", "q1"}
    # tier 2 knows items 0-1 perfectly (100) and nothing else (0); tier 4 knows all four half-way (50)
    qs = pd.concat([
        pd.DataFrame({"run_id": "baseline", "question_id": list(question_items), "value": 0.0, "condition": "baseline",
                      "rank": 0, "items": 0}),
        pd.DataFrame({"run_id": "original_text/r8_n2_s0", "question_id": list(question_items),
                      "value": [100.0, 100.0, 0.0, 0.0], "condition": "original_text", "rank": 8, "items": 2}),
        pd.DataFrame({"run_id": "original_text/r8_n4_s0", "question_id": list(question_items), "value": 50.0,
                      "condition": "original_text", "rank": 8, "items": 4})]).assign(
        dataset="wiki", seed=0, metric="f1", question_set="dataset", question_type="wiki", abstention=False)
    scores = run_scores(qs, "wiki", [("capacity", "baseline"), ("capacity", "original_text/r8_n2_s0"),
                                     ("capacity", "original_text/r8_n4_s0")])
    table = capacity_table(Study(scores, "wiki", BOOT, qs), ["f1"], question_items, items)
    trained = table[table["curve"] == "trained"].set_index("items")["score"]
    everything = table[table["curve"] == "all"].set_index("items")["score"]
    assert everything[2] == everything[4] == 50.0  # on all questions the tiers look alike
    assert trained[2] == 100.0 and trained[4] == 50.0  # retention: the small tier keeps what it learned


def test_foreign_scores_build_each_experiments_table_from_its_own_rows():
    """Another study's long file: blank baseline rank, full-set runs with their item count (500), the same
    settings in several experiments as separate runs, replicates within an experiment. Old: empty
    compression table, capacity without baseline."""
    rows = []
    for experiment, base in (("compression", 2.0), ("capacity", 2.1)):
        rows.append({**row("baseline", base, experiment), "rank": "", "items": ""})
    for value in (3.2224, 3.2272, 3.2368, 3.2589):  # replicate runs of r16/500/original_text, seed not told apart
        rows.append(row("original_text", value, "compression", rank=16, items=500, seed=0))
    rows.append(row("summ_l5_extreme", 2.212, "compression", rank=16, items=500))
    rows += [row("original_text", v, "capacity", rank=16, items=n) for n, v in ((50, 2.5), (250, 3.3), (500, 3.1))]
    scores = pd.DataFrame(rows)
    result = standalone(scores, SETTINGS, None, None)
    compression = by_condition(result["tables"][("compression", "wiki")])
    assert list(compression.index) == ["baseline", "original_text", "summ_l5_extreme"]
    orig = compression.loc["original_text"]
    assert orig["n_seeds"] == 4 and orig["score"] == pytest.approx(np.mean([3.2224, 3.2272, 3.2368, 3.2589]))
    assert orig["vs_baseline_diff"] == pytest.approx(orig["score"] - 2.0)  # its own experiment's baseline
    capacity = result["tables"][("capacity", "wiki")]
    assert capacity["items"].tolist() == [0, 50, 250, 500]
    assert capacity["score"].iloc[0] == 2.1  # the capacity experiment's own baseline row
    assert result["summary"]["wiki"]["capacity"]["f1"]["all"]["peak_items"] == 250


def test_rank_tables_have_one_row_per_rank_and_a_difference_to_the_top_rank():
    scores = pd.DataFrame([row("baseline", 1.0, "rank_items")] + [
        row("original_text", 10 * r + n, "rank_items", rank=r, items=n) for r in (4, 16) for n in (100, 300)])
    table = rank_table(Study(scores, "wiki", BOOT), ["f1"], "rank_items")
    assert table[["items", "rank"]].values.tolist() == [["100", 4], ["100", 16], ["300", 4], ["300", 16]]
    assert table["score"].tolist() == [140.0, 260.0, 340.0, 460.0]
    assert table["vs_top_rank_diff"].tolist() == [-120.0, 0.0, -120.0, 0.0]


def test_judge_metrics_count_unparsed_verdicts():
    metrics = {m: (v, n) for m, v, n in run_metrics(per_question("baseline", [5, 3, None, 4], metric="judge_score"))}
    assert metrics["judge_score"] == (4.0, 3) and metrics["judge_unparsed_pct"] == (25.0, 4)


def test_longmemeval_accuracy_per_type_task_average_and_abstention():
    answers = pd.DataFrame({
        "run_id": "baseline", "question_id": ["a", "b", "c", "d_abs"], "question_set": "dataset",
        "question_type": ["temporal-reasoning", "temporal-reasoning", "knowledge-update", "multi-session"],
        "abstention": [False, False, False, True], "truncated": False, "answer_loglik": -1.0,
        "distractor_loglik": [-2.0, -2.0, -2.0, None], "distractors_beaten": [1.0, 0.5, 1.0, None],
        **{m: [50.0] * 4 for m in ("rouge1", "rouge2", "rougeL", "bleu", "exact_match", "f1")}})
    verdicts = pd.DataFrame({"run_id": "baseline", "question_id": ["a", "b", "c", "d_abs"],
                             "judge_correct": [1, 0, 1, None], "judge_p_yes": [0.9, 0.2, 0.8, None]})
    metrics = {m: (v, n) for m, v, n in run_metrics(question_scores(answers, verdicts, "longmemeval"))}
    # an unparsed verdict counts as wrong, as LongMemEval's print_qa_metrics.py counts every question
    assert metrics["judge_accuracy"] == (50.0, 4)
    assert metrics["judge_accuracy[temporal-reasoning]"] == (50.0, 2)
    assert metrics["judge_accuracy[multi-session]"] == (0.0, 1)
    # three of the six official types: not available (NaN), n = the types present
    assert np.isnan(metrics["judge_task_avg_accuracy"][0]) and metrics["judge_task_avg_accuracy"][1] == 3
    assert metrics["judge_abstention_accuracy"] == (0.0, 1) and metrics["judge_unparsed_pct"] == (25.0, 4)
    assert metrics["answer_margin"] == (1.0, 3) and metrics["answer_preferred"] == (pytest.approx(250 / 3), 3)


def test_forgetting_is_the_control_change_against_baseline():
    scores = pd.DataFrame([row("baseline", 10.0), row("original_text", 20.0),
                           row("baseline", 60.0, metric="control_f1"), row("original_text", 45.0, metric="control_f1")])
    table = by_condition(compression_table(Study(scores, "wiki", BOOT), ["f1"]), "control_f1")
    assert table.loc["original_text", "vs_baseline_diff"] == -15.0


def test_unknown_metric_is_one_clear_error(tmp_path):
    from lorapress.io import StageError

    with pytest.raises(StageError, match="none of the metrics \\['bleu'\\]"):
        standalone(pd.DataFrame([row("baseline", 1.0)]), Settings(["bleu"], 100, 0.95, 0, 1e-3, {}), None, None)


def test_settings_come_whole_from_the_config():
    from lorapress.io import StageError

    with pytest.raises(StageError, match="missing keys"):
        Settings.from_dict({"metrics": ["f1"]})
    assert json.loads(json.dumps(SETTINGS.__dict__)) == SETTINGS.__dict__


def test_best_condition_skips_conditions_without_a_score():
    """A metric no condition could score (F1 on a dataset of abstention questions only) has no best condition;
    a condition without a score never wins over one with a score."""
    nan = float("nan")
    row = {"metric": "f1", "ci_low": 0.0, "ci_high": 1.0, "vs_baseline_diff": 0.1, "vs_baseline_sig": False,
           "vs_baseline_sig_holm": False}
    table = pd.DataFrame([{**row, "condition": "baseline", "score": 0.2}, {**row, "condition": "original_text", "score": nan},
                          {**row, "condition": "ext", "score": nan}])
    assert best_condition(table, "f1") == {}
    table.loc[2, "score"] = 0.3
    assert best_condition(table, "f1")["condition"] == "ext"


def seeded_study(effects: dict, seeds=3, questions=40, seed_sd=0.3, margins=None, rng_seed=5):
    """Per-question f1 of the baseline (one run) and conditions with `seeds` seeds each."""
    rng = np.random.default_rng(rng_seed)
    shared = rng.normal(50, 10, questions)
    records = []
    for condition, effect in {"baseline": 0.0, **effects}.items():
        for seed in range(1 if condition == "baseline" else seeds):
            shift = 0.0 if condition == "baseline" else rng.normal(0, seed_sd)
            for q, v in enumerate(shared + effect + shift + rng.normal(0, 1, questions)):
                rank, items = (0, "0") if condition == "baseline" else (8, "all")
                records.append({"dataset": "wiki", "condition": condition, "rank": rank, "items": items, "seed": seed,
                                "question_set": "dataset", "question_id": f"q{q}", "question_type": "wiki",
                                "abstention": False, "run_id": f"{condition}/{seed}", "metric": "f1", "value": v})
    qs = pd.DataFrame(records)
    runs = qs.groupby(["condition", "rank", "items", "seed"], as_index=False)["value"].mean()
    scores = runs.assign(dataset="wiki", experiment="compression", metric="f1", n=questions)[COLUMNS]
    return Study(scores, "wiki", BOOT, qs, margins=margins), qs


def test_tables_carry_variance_components_mdd_and_equivalence():
    study, qs = seeded_study({"original_text": 0.0, "summ_l1_slight": 5.0}, margins={"f1": 2.0})
    table = by_condition(compression_table(study, ["f1"]))
    orig = table.loc["original_text"]
    per_question = qs[qs["condition"] == "original_text"].groupby("question_id")["value"].mean()
    assert orig["question_se"] == pytest.approx(per_question.std(ddof=1) / np.sqrt(40))
    runs = qs[qs["condition"] == "original_text"].groupby("seed")["value"].mean()
    assert orig["seed_sd"] == pytest.approx(runs.std(ddof=1))
    # MDD: Holm's first step over the 2 vs-baseline comparisons (the baseline's own row has none)
    from scipy import stats
    expected = (stats.t.ppf(1 - 0.05 / 4, orig["vs_baseline_df"]) + stats.t.ppf(0.8, orig["vs_baseline_df"])) \
        * orig["vs_baseline_se"]
    assert orig["vs_baseline_mdd"] == pytest.approx(expected)
    assert np.isnan(table.loc["baseline", "vs_baseline_mdd"])
    # the null condition: not significant; equivalent within ±2 f1 points only if its 90% interval is inside
    low = orig["vs_baseline_diff"] - stats.t.ppf(0.95, orig["vs_baseline_df"]) * orig["vs_baseline_se"]
    high = orig["vs_baseline_diff"] + stats.t.ppf(0.95, orig["vs_baseline_df"]) * orig["vs_baseline_se"]
    assert orig["vs_baseline_equivalent"] == (-2 < low and high < 2)
    assert table.loc["summ_l1_slight", "vs_baseline_equivalent"] is False  # 5 points off: not within ±2
    assert table.loc["summ_l1_slight", "vs_baseline_margin"] == 2.0
    assert table.loc["baseline", "vs_baseline_equivalent"] is None


def test_claims_read_not_significant_as_equivalent_or_too_small_to_see():
    from lorapress.claims import evaluate_claims

    study, _ = seeded_study({"original_text": 0.0, "summ_l1_slight": 0.0}, seed_sd=0.05, margins={"f1": 2.0})
    table = compression_table(study, ["f1"])
    claims = evaluate_claims({("compression", "wiki"): table}, {"wiki": "wiki"}, {"wiki": ["f1"]})
    l1 = next(c for c in claims if c["claim"] == "wiki_l1_vs_baseline")
    row = by_condition(table).loc["summ_l1_slight"]
    assert l1["verdict"] == "not significant" and l1["mdd"] == pytest.approx(row["vs_baseline_mdd"])
    assert l1["reading"] == ("no evidence for a difference; equivalent within ±2" if row["vs_baseline_equivalent"]
                             else f"no evidence for a difference: too small to see with these seeds (could not "
                                  f"detect less than ±{row['vs_baseline_mdd']:.3g})")
    wide, _ = seeded_study({"original_text": 0.0, "summ_l1_slight": 0.0}, seed_sd=3.0, margins={"f1": 2.0})
    claims = evaluate_claims({("compression", "wiki"): compression_table(wide, ["f1"])}, {"wiki": "wiki"},
                             {"wiki": ["f1"]})
    l1 = next(c for c in claims if c["claim"] == "wiki_l1_vs_baseline")
    assert l1["verdict"] == "not significant" and l1["reading"].startswith("no evidence for a difference: too small")


def test_a_metric_no_question_could_score_gets_no_rows():
    """Three LongMemEval questions of two types: none has three same-type distractors, so multiple-choice accuracy
    scores nothing there; the table leaves the metric out rather than printing blank rows."""
    from lorapress.aggregate import table_metrics

    study, _ = seeded_study({"original_text": 0.0})
    blank = study.scores[study.scores["metric"] == "f1"].assign(metric="mc_acc", value=float("nan"))
    study.scores = pd.concat([study.scores, blank], ignore_index=True)
    assert table_metrics(study, ["f1", "mc_acc"]) == ["f1"]
    assert set(compression_table(study, ["f1", "mc_acc"])["metric"]) == {"f1"}


def test_claims_show_the_trr_they_were_tested_at_beside_the_seeds_and_name_an_absent_variant():
    from lorapress.claims import evaluate_claims
    from lorapress.report import claims_section

    study, _ = seeded_study({"original_text": 0.0, "summ_l1_slight": 0.0})
    table = compression_table(study, ["f1"]).assign(trr_mean=lambda t: t["condition"].map(
        {"original_text": 0.0, "summ_l1_slight": 61.5}))
    claims = {c["claim"]: c for c in evaluate_claims({("compression", "wiki"): table}, {"wiki": "wiki"},
                                                     {"wiki": ["f1"]})}
    assert (claims["wiki_l1_vs_baseline"]["trr_tested"], claims["wiki_l1_vs_baseline"]["trr_seed"]) == (61.5, 35.2)
    l5 = claims["wiki_l5_vs_baseline"]
    assert l5["verdict"] == "not tested" and l5["why"] == "summ_l5_extreme is not among this run's variants"
    assert (l5["trr_tested"], l5["trr_seed"]) == (None, 89.7)
    page = claims_section({"claims": list(claims.values())})
    assert "TRR here / seed&#x27;s (%)" in page or "TRR here / seed's (%)" in page
    assert "61.5 / 35.2" in page and "– / 89.7" in page


def test_report_reads_no_difference_as_equivalent_or_too_small_to_see():
    from lorapress.report import if_no_difference

    base = {"vs_baseline_p": 0.4, "vs_baseline_sig_holm": False, "vs_baseline_margin": 2.0, "vs_baseline_mdd": 3.456}
    assert if_no_difference({**base, "vs_baseline_equivalent": True}, "vs_baseline") == "equivalent within ±2"
    assert if_no_difference({**base, "vs_baseline_equivalent": False}, "vs_baseline") == \
        "too small to see with these seeds (could not detect less than ±3.46)"
    assert if_no_difference({**base, "vs_baseline_sig_holm": True}, "vs_baseline") == "–"


def test_a_capacity_curve_without_scores_leaves_its_claim_untested():
    """A one-question LongMemEval run (the cluster rehearsal) had a metric no capacity tier could score: the claims
    crashed on the all-NaN curve (KeyError: nan) and no table was written."""
    from lorapress.claims import evaluate_claims

    nan = float("nan")
    rows = [{"curve": "all", "items": n, "metric": "f1", "score": nan, "vs_previous_diff": nan,
             "vs_previous_ci_low": nan, "vs_previous_ci_high": nan} for n in (0, 1, 3)]
    claims = evaluate_claims({("capacity", "lme"): pd.DataFrame(rows)}, {"lme": "longmemeval"}, {"lme": ["f1"]})
    capacity = [c for c in claims if c["claim"] == "capacity_interior_peak"]
    assert capacity and all(c["verdict"] == "not tested" for c in capacity)


def test_multiple_choice_accuracy_is_a_percentage_metric_with_intervals(tmp_path):
    """mc_acc / mc_acc_norm flow from the answer records (booleans, None where not scored, read back from JSON as
    the pipeline reads them) to per-question 0/100 scores, run means and a table with intervals."""
    won = {"baseline": ([False, False, True, None], [False, True, True, None]),
           "original_text/r8_nall_s0": ([True, True, True, None], [True, False, True, None])}
    records = [{"run_id": run, "question_set": "dataset", "question_id": f"q{i}", "question_type": "wiki",
                "abstention": i == 3, "truncated": False, "answer_loglik": -1.0,
                "distractor_loglik": None if i == 3 else -2.0, "distractors_beaten": None if i == 3 else 1.0,
                "f1": 50.0, "mc_acc": acc[i], "mc_acc_norm": norm[i]}
               for run, (acc, norm) in won.items() for i in range(4)]
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    qs = question_scores(pd.read_json(path, lines=True), None, "wiki")
    base = qs[(qs["run_id"] == "baseline") & (qs["metric"] == "mc_acc")].set_index("question_id")["value"]
    assert base[["q0", "q1", "q2"]].tolist() == [0.0, 0.0, 100.0] and np.isnan(base["q3"])  # abstention: not scored
    metrics = {m: (v, n) for m, v, n in run_metrics(qs[qs["run_id"] == "baseline"])}
    assert metrics["mc_acc"] == (pytest.approx(100 / 3), 3) and metrics["mc_acc_norm"] == (pytest.approx(200 / 3), 3)
    scores = run_scores(qs, "wiki", [("compression", r) for r in won])
    study = Study(scores, "wiki", BOOT, qs, margins={"mc_acc": 2.0, "mc_acc_norm": 2.0})
    table = compression_table(study, ["mc_acc", "mc_acc_norm"]).set_index(["metric", "condition"])
    trained = table.loc[("mc_acc", "original_text")]
    assert trained["score"] == 100.0 and trained["vs_baseline_diff"] == pytest.approx(200 / 3)
    assert trained["vs_baseline_ci_low"] <= trained["vs_baseline_diff"] <= trained["vs_baseline_ci_high"]
    assert trained["n_questions"] == 3 and trained["vs_baseline_margin"] == 2.0
    norm = table.loc[("mc_acc_norm", "original_text")]
    assert norm["score"] == pytest.approx(200 / 3) and norm["vs_baseline_diff"] == pytest.approx(0.0)


def test_report_states_the_chance_level_beside_multiple_choice_accuracy():
    from lorapress import report

    assert report.label("mc_acc") == "multiple-choice accuracy (%)"
    assert report.label("mc_acc_norm") == "multiple-choice accuracy, length-normalised (%)"
    page = report.answers_section({"datasets": {"wiki": {"metrics": ["f1", "mc_acc"]}}})
    assert "multiple-choice accuracy (%)" in page and "would already score 25%" in page
    assert "25%" not in report.answers_section({"datasets": {"wiki": {"metrics": ["f1"]}}})


# ---------------------------------------------------------------- fact survival first; say nothing the data do not say
def test_fact_survival_leads_the_compression_table_with_its_wilson_interval():
    """Old: the compression table started with rank and items; fact survival only in the decomposition table, with
    a bootstrap interval that shrinks to a point at 0% (as if a few questions proved that nothing survived)."""
    from lorapress.aggregate import compressor, fact_survival, tables_for, variant_profiles

    records = pd.DataFrame({"fact_survived": [True, True, True, False, None]})  # None: an abstention question
    fact = fact_survival(records, 0.95)
    assert fact["fact_survival"] == 75.0  # 3 of the 4 questions with a fact to survive
    assert (fact["fact_survival_ci_low"], fact["fact_survival_ci_high"]) == (pytest.approx(30.064, abs=1e-3),
                                                                              pytest.approx(95.441, abs=1e-3))  # Wilson
    none = fact_survival(pd.DataFrame({"fact_survived": [False] * 10}), 0.95)
    assert none["fact_survival"] == 0.0 and none["fact_survival_ci_low"] == 0.0
    assert none["fact_survival_ci_high"] == pytest.approx(100 * 1.96 ** 2 / (10 + 1.96 ** 2), abs=0.01)  # 27.75, not 0

    study, _ = seeded_study({"original_text": 0.0, "summ_l1_slight": 0.0})
    profiles = variant_profiles({"baseline", "original_text", "summ_l1_slight"}, {"summ_l1_slight": {"trr_mean": 35.0}},
                                {"summ_l1_slight": fact}, {}, "builtin:smollm2-135m-instruct")
    table = tables_for(study, SETTINGS, {}, profiles=profiles)["compression"]
    assert list(table.columns[:6]) == ["condition", "compressor", "trr_mean", "fact_survival", "fact_survival_ci_low",
                                       "fact_survival_ci_high"]
    l1 = by_condition(table).loc["summ_l1_slight"]
    assert l1["compressor"] == "base model (builtin:smollm2-135m-instruct)" and l1["trr_mean"] == 35.0
    assert l1["fact_survival"] == 75.0 and l1["fact_survival_ci_low"] == pytest.approx(30.064, abs=1e-3)
    assert by_condition(table).loc["original_text", "compressor"] == "none"
    assert compressor("ext", None, "m") == "TF-IDF extractive"
    assert compressor("summ_l1_slight", {"compressor": "Qwen/Qwen3-8B"}, "m") == "Qwen/Qwen3-8B"  # provenance first
    # as a .meta.json holds it (under settings), for a variant of any name
    assert compressor("rewrite_qa", {"stage": "compress", "settings": {"compressor": "base"}}, "m") == "base model (m)"
    assert compressor("lead_2", {"settings": {"compressor": "command: python3 x.py"}}, "m") == "command: python3 x.py"
    assert compressor("summ_l1_slight") == "not recorded"  # another study's scores: no default assumed

    from lorapress.report import lead_cells, variants_table

    assert lead_cells(l1) == {"compressor": "base model (builtin:smollm2-135m-instruct)", "TRR %": "35.0",
                              "fact survival % [95% CI]": "75.0 [30.1, 95.4]"}
    shown = variants_table({"metrics": ["f1"]}, table)
    assert list(shown.columns[:4]) == ["condition", "compressor", "TRR %", "fact survival % [95% CI]"]


def test_best_condition_is_named_only_where_it_separates_from_the_others():
    """Old: the highest point estimate was named the best condition, however close the runner-up."""
    from lorapress.report import answers_section

    # both trained conditions far above the baseline, 0.3 points apart: neither separates from the other
    study, _ = seeded_study({"original_text": 5.0, "summ_l1_slight": 5.3, "ext": 0.0})
    close = best_condition(compression_table(study, ["f1"]), "f1", study)
    assert close["separates"] is False and close["condition"] is None
    assert close["top_point_estimate"] in ("original_text", "summ_l1_slight")
    assert {close["top_point_estimate"], close["runner_up"]} == {"original_text", "summ_l1_slight"}
    assert close["vs_runner_up_ci_low"] < 0 < close["vs_runner_up_ci_high"]
    summary = {"datasets": {"wiki": {"metrics": ["f1"], "best_condition": {"f1": close}}}}
    assert (f"no condition separates from the others (highest point estimate: {close['top_point_estimate']})"
            in answers_section(summary))
    # 8 points above every other condition: it separates, and only then is it named
    study, _ = seeded_study({"original_text": 0.0, "summ_l1_slight": 8.0, "ext": 0.0})
    clear = best_condition(compression_table(study, ["f1"]), "f1", study)
    assert clear["separates"] is True and clear["condition"] == clear["top_point_estimate"] == "summ_l1_slight"
    # without per-question or per-seed data nothing can separate
    assert best_condition(compression_table(study, ["f1"]), "f1")["condition"] is None


def test_an_uninformative_judge_reads_judge_uninformative_and_is_not_the_headline():
    """Old: the answers table gave the flat judge score (1.00 on every condition) and its best condition, the claims
    read 'not significant ... equivalent', and the headline plot showed the judge."""
    from lorapress.aggregate import headline_metric
    from lorapress.claims import evaluate_claims
    from lorapress.report import answers_section, claims_section

    assert headline_metric(["judge_score", "f1", "answer_loglik"], False)[0] == "judge_score"
    metric, why = headline_metric(["judge_score", "f1", "answer_loglik"], True)
    assert metric == "f1" and "judge failed its controls" in why
    assert headline_metric(["judge_score"], True)[0] is None

    scores = pd.DataFrame([row(c, v, metric=m) for m in ("judge_score", "f1")
                           for c, v in (("baseline", 1.0), ("original_text", 1.0), ("summ_l1_slight", 1.0))])
    table = compression_table(Study(scores, "wiki", BOOT), ["judge_score", "f1"])
    claims = evaluate_claims({("compression", "wiki"): table}, {"wiki": "wiki"}, {"wiki": ["judge_score", "f1"]},
                             uninformative_judges={"wiki"})
    judged = [c for c in claims if c["metric"] == "judge_score"]
    assert judged and all(c["verdict"] == "judge uninformative" and "estimate" not in c for c in judged)
    assert all(c["verdict"] != "judge uninformative" for c in claims if c["metric"] == "f1")

    best = {"condition": "original_text", "top_point_estimate": "original_text", "separates": True, "score": 1.0,
            "ci_low": 1.0, "ci_high": 1.0, "vs_baseline_diff": 0.0}
    summary = {"datasets": {"wiki": {"metrics": ["judge_score"], "judge_uninformative": True,
                                     "best_condition": {"judge_score": best}}}, "claims": judged}
    page = answers_section(summary, {"wiki": table})
    assert page.count("<td>judge uninformative</td>") == 6 + 3  # its answers row; its cell of each condition
    assert "1.00 [1.00, 1.00]" not in page and "original_text</td>" in page
    claims_page = claims_section(summary)
    assert "<td>judge uninformative</td>" in claims_page and "not significant" not in claims_page.split("<table")[1]


def test_the_report_opens_with_the_runs_scale_and_tests_the_claims_at_it():
    from lorapress.aggregate import run_scale
    from lorapress.report import claims_section, model_size, scale_sentence

    study, _ = seeded_study({"original_text": 0.0}, seeds=3, questions=36)
    assert run_scale(study, 3) == {"items": None, "questions": 36, "seeds": 3}
    summary = {"datasets": {"wiki": {"scale": {"items": 12, "questions": 36, "seeds": 1}}},
               "claims": [{"text": "a claim", "dataset": "wiki", "metric": "f1", "verdict": "not tested"}]}
    scale = scale_sentence(summary, "builtin:smollm2-135m-instruct")
    assert scale == "135M model (builtin:smollm2-135m-instruct); wiki: 12 items, 36 questions, 1 seed"
    assert "tested at this run's scale (135M model (builtin:smollm2-135m-instruct); wiki: 12 items" in \
        claims_section(summary, scale)
    assert model_size("Qwen/Qwen3-8B") == "8B" and model_size("gpt2") is None
