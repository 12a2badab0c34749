"""`lorapress plan --design`, pinned on synthetic pilots whose variance components are known."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lorapress import cli
from lorapress.design import (
    DESIGN_CLAIMS, PRIOR_SEED_SD, VarianceComponents, claim_target, design_claims, design_variance,
    MAX_QUESTIONS, estimate_components, fewest_questions, power, seeds_needed, simulated_power,
    smallest_detectable,
)

REPO = Path(__file__).resolve().parents[1]
CELLS = [("original_text", 16), ("summ_l1_slight", 16), ("summ_l3_medium", 16), ("summ_l5_extreme", 16),
         ("summ_l5_extreme", 4)]


def synthetic_pilot(seeds=3, questions=300, seed_sd=0.05, interaction_sd=0.6, noise=0.5, cells=CELLS, rng_seed=0,
                    effects=None, dataset="wiki", metric="judge_score"):
    """Per-question scores as results/tables/question_scores.csv has them: a baseline run and trained
    cells with `seeds` seeds on a 1-5 scale; the interaction is each trained cell's own per-question
    deviation (so a paired difference against the baseline has interaction variance interaction_sd^2)."""
    rng = np.random.default_rng(rng_seed)
    effects = effects or {}
    difficulty = 3.0 + rng.normal(0, 0.8, questions)
    records = []

    def add(condition, rank, seed, values):
        items = 0 if condition == "baseline" else "all"
        records.extend({"dataset": dataset, "condition": condition, "rank": rank, "items": items, "seed": seed,
                        "question_set": "dataset", "question_id": f"q{q}", "question_type": "wiki",
                        "abstention": False, "run_id": f"{condition}/r{rank}_n{items}_s{seed}", "metric": metric,
                        "value": v} for q, v in enumerate(values))

    add("baseline", 0, 0, difficulty + rng.normal(0, noise, questions))
    for condition, rank in cells:
        interaction = rng.normal(0, interaction_sd, questions)
        for seed in range(seeds):
            add(condition, rank, seed, difficulty + effects.get(condition, 0.0) + interaction
                + rng.normal(0, seed_sd) + rng.normal(0, noise, questions))
    return pd.DataFrame(records)


def test_components_of_a_pilot_with_seeds():
    pilot = synthetic_pilot(seeds=5, cells=[(f"c{k}", 16) for k in range(10)], rng_seed=1)
    c = estimate_components(pilot, "wiki", "judge_score")
    assert c.residual_var == pytest.approx(0.25, rel=0.05)  # 10 cells x 4 x 299 df
    # tau^2 of a paired difference vs the baseline: the cell's interaction only (the baseline's noise is residual)
    assert c.interaction_var == pytest.approx(0.36, rel=0.15)
    assert c.seed_var == pytest.approx(0.05 ** 2, rel=0.6)  # 40 df at the seed level
    assert c.seed_source.startswith("pilot") and c.n_questions == 300 and c.max_seeds == 5


def test_one_seed_pilot_takes_the_seed_studys_spread_as_prior():
    pilot = synthetic_pilot(seeds=1)
    c = estimate_components(pilot, "wiki", "judge_score")
    assert c.seed_var == pytest.approx(PRIOR_SEED_SD ** 2) and PRIOR_SEED_SD == pytest.approx(0.01616, abs=1e-4)
    assert "prior" in c.seed_source and c.residual_var == 0.0
    # residual folded into the interaction: 0.6^2 + 2 x 0.5^2 (cell's and baseline's noise)
    assert c.interaction_var == pytest.approx(0.36 + 0.5, rel=0.15)
    f1 = estimate_components(synthetic_pilot(seeds=1, metric="f1"), "wiki", "f1")
    original = f1.scores[("original_text", 16)]
    assert np.sqrt(f1.seed_var) == pytest.approx(PRIOR_SEED_SD / 3.2363 * original, rel=1e-3)  # relative prior


def test_design_variance_and_power_by_hand():
    c = VarianceComponents(0.01, 0.3, 0.2, 100, 3, {}, "", "")
    variance, df = design_variance(c, 4, 500, vs_baseline=True)
    assert variance == pytest.approx(0.01 / 4 + (0.3 + 0.2 / 4 + 0.2) / 500)
    variance, _ = design_variance(c, 4, 500, vs_baseline=False)
    assert variance == pytest.approx(2 * 0.01 / 4 + (0.3 + 2 * 0.2 / 4) / 500)
    assert power(0.0, 1.0, 1e6, 0.05) == pytest.approx(0.05, abs=1e-4)
    assert power(2.8016, 1.0, 1e9, 0.05) == pytest.approx(0.8, abs=1e-3)  # z_.975 + z_.8 = 2.80
    q = fewest_questions(c, 10, 0.2, 0.01, 0.8, vs_baseline=True)
    assert power(0.2, *design_variance(c, 10, q, True), 0.01) >= 0.8 > power(0.2, *design_variance(c, 10, q - 1, True),
                                                                              0.01)
    # the seed level alone caps what questions can do: 2 seeds can never see 0.05 here
    assert fewest_questions(c, 2, 0.05, 0.01, 0.8, vs_baseline=False) is None


def test_a_claim_out_of_reach_says_the_seed_levels_floor_and_the_seeds_it_needs():
    """Pinned on the normal limit: with seed variance 1, no question variance and thousands of seeds the
    t quantiles are z's, so 80% power at 5% needs d = (z_.975 + z_.8)·sqrt(2/S) = 2.8016·sqrt(2/S)."""
    c = VarianceComponents(1.0, 0.0, 0.0, 100, 3, {}, "", "")
    assert smallest_detectable(c, 10_000, MAX_QUESTIONS, 0.05, 0.8, False) == pytest.approx(2.8016 * np.sqrt(2e-4),
                                                                                            rel=1e-3)
    assert smallest_detectable(c, 10_000, MAX_QUESTIONS, 0.05, 0.8, True) == pytest.approx(2.8016 * np.sqrt(1e-4),
                                                                                           rel=1e-3)
    # d = 0.1 needs S = 2·2.8016²/0.1² = 1,570 seeds per arm (a few more for the t tails)
    needed = seeds_needed(c, 0.1, 0.05, 0.8, vs_baseline=False, start=21)
    assert 1570 <= needed <= 1575
    assert fewest_questions(c, needed, 0.1, 0.05, 0.8, False) is not None
    assert fewest_questions(c, needed - 1, 0.1, 0.05, 0.8, False) is None
    assert seeds_needed(c, 0.1, 0.05, 0.8, vs_baseline=False, start=21, limit=1000) is None
    # a few seeds: the guarded df make the floor wider than the z's say
    assert smallest_detectable(c, 3, MAX_QUESTIONS, 0.05, 0.8, False) > 2.8016 * np.sqrt(2 / 3)


def test_targets_are_the_claims_in_the_pilots_units():
    c = VarianceComponents(0.0, 0.1, 0.0, 100, 1, {("baseline", 0): 3.0, ("original_text", 16): 3.5,
                                                   ("summ_l5_extreme", 16): 2.2}, "", "")
    by_id = {claim.claim: claim for claim in DESIGN_CLAIMS}
    assert claim_target(by_id["wiki_l1_vs_baseline"], c, "judge_score")[0] == pytest.approx(0.021 * 3.0)
    assert claim_target(by_id["wiki_l1_vs_original"], c, "f1")[0] == pytest.approx(0.0029 * 3.5)
    assert claim_target(by_id["wiki_l5_vs_baseline"], c, "f1")[0] == pytest.approx(-0.297 * 3.0)
    assert claim_target(by_id["rank4_beats_rank16_on_l5"], c, "judge_score")[0] == pytest.approx(0.035)
    assert claim_target(by_id["rank4_beats_rank16_on_l5"], c, "f1")[0] == pytest.approx(0.035 / 2.212 * 2.2)
    assert claim_target(by_id["lme_l2_vs_original"], c, "judge_accuracy")[0] == pytest.approx(15.8)


def test_the_proposed_design_reaches_its_power_in_simulation():
    """The design is checked by simulating studies from the estimated components and applying the
    intervals (uncertainty.difference) at α/m: the simulated power is at least the wanted 80% (within
    3 simulation sds)."""
    pilot = synthetic_pilot(seeds=3, rng_seed=2)
    rows = design_claims(pilot, lambda d: "judge_score", lambda d: "wiki", n_studies=300)
    assert [r["claim"] for r in rows] == ["wiki_l1_vs_baseline", "wiki_l1_vs_original", "wiki_l3_vs_baseline",
                                          "wiki_l5_vs_baseline", "rank4_beats_rank16_on_l5"]
    assert all(r["m_claims"] == 5 and r["alpha_per_claim"] == pytest.approx(0.01) for r in rows)
    designed = [r for r in rows if r["seeds"] is not None]
    for r in rows:  # out of reach: 20 seeds' floor lies above the target, the seeds it needs reach it
        if r["seeds"] is None:
            assert r["smallest_detectable"] > abs(r["target"]) and r["seeds_needed"] > 20
            assert f"±{r['smallest_detectable']:.4g}" in r["note"] and f"{r['seeds_needed']} seeds" in r["note"]
    assert {r["claim"] for r in designed} >= {"wiki_l3_vs_baseline", "wiki_l5_vs_baseline"}
    c = estimate_components(pilot, "wiki", "judge_score")
    for r in designed:
        assert r["power"] >= 0.8
        again = simulated_power(c, r["seeds"], r["questions"], r["target"], 0.01, r["claim"].endswith("baseline"),
                                n_studies=300, seed=7)  # studies the design did not see
        assert again >= 0.8 - 3 * np.sqrt(0.8 * 0.2 / 300), (r, again)
    # cheapest by seeds x questions (before the simulation's check adds questions): no other number of
    # seeds reaches the power for less
    l3 = next(r for r in rows if r["claim"] == "wiki_l3_vs_baseline")
    assert l3["questions"] >= l3["questions_analytic"]
    for s in range(2, 21):
        q = fewest_questions(c, s, l3["target"], 0.01, 0.8, True)
        assert q is None or s * q >= l3["seeds"] * l3["questions_analytic"]


def test_simulated_power_of_a_null_is_the_level():
    c = VarianceComponents(0.0025, 0.36, 0.25, 300, 3, {}, "", "")
    assert simulated_power(c, 3, 300, 1e-9, 0.05, False, n_studies=400) <= 0.05 / 2 + 3 * np.sqrt(0.025 / 400)


def test_plan_design_prints_a_table_per_claim(tmp_path, monkeypatch, capsys):
    for name in ("config.yaml", "config", "workflow"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "data/control").mkdir(parents=True)
    shutil.copy(REPO / "data/control/general.jsonl", tmp_path / "data/control/general.jsonl")
    synthetic_pilot(seeds=1, rng_seed=3).to_csv(tmp_path / "pilot.csv", index=False)
    monkeypatch.chdir(tmp_path)
    argv = ["plan", "--design", "--configfile", "config/paper.yaml", "--pilot", "pilot.csv",
            "--assume", "wiki=500,1500,2000000", "--assume", "longmemeval=940,500,40000000"]
    assert cli.main([*argv, "--out", "design.json"]) == 0
    text = capsys.readouterr().out
    assert "wiki_l5_vs_baseline" in text and "GPU-h" in text and "prior (one seed in the pilot)" in text
    rows = json.loads((tmp_path / "design.json").read_text())
    l5 = next(r for r in rows if r["claim"] == "wiki_l5_vs_baseline")
    assert l5["seeds"] >= 2 and l5["cost"] > 0 and l5["metric"] == "judge_score"
    assert cli.main(["plan", "--design", "--configfile", "config/paper.yaml"]) == 2  # no --pilot: one line
    capsys.readouterr()
    # the intervals need two seeds per trained arm: fewer is a mistake, said in one line before any planning
    assert cli.main([*argv, "--max-seeds", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("lorapress plan: error: --max-seeds: must be at least 2 (a seed-level "
                                               "interval needs two seeds per trained cell), got 1")
    # a metric the pilot never scored: one line naming it, the pilot and the dataset, before any planning
    assert cli.main([*argv, "--metric", "rouge1"]) == 2
    assert capsys.readouterr().err.strip() == ("lorapress plan: error: --metric rouge1: the pilot pilot.csv has no "
                                               "rouge1 scores for dataset wiki (its metrics there: judge_score)")
