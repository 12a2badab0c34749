"""The rank recommendation, on grids whose truth is known."""

import numpy as np
import pytest

from lorapress.rankfit import NO_EVIDENCE, band_points, recommend

TRR = (0.0, 60.0, 86.0)


def grid_of(truth, ranks, noise=0.0, n_rep=400, rng=None, replicate_sd=None):
    """Cell scores (truth + noise) and bootstrap-like replicates spread by `replicate_sd` around them."""
    rng = rng or np.random.default_rng(0)
    grid, reps = {}, {}
    for r in ranks:
        for t in TRR:
            score = truth(r, t) + rng.normal(0, noise) if noise else truth(r, t)
            grid.setdefault(r, {})[t] = score
            reps.setdefault(r, {})[t] = score + rng.normal(0, replicate_sd if replicate_sd is not None else noise, n_rep)
    return grid, reps


def test_a_known_crossing_is_recovered():
    # r=4 loses on long text and wins on heavily compressed text
    truth = lambda r, t: 3.0 + (0.2 if r == 16 else 0.0) - (0.004 * t if r == 16 else 0.0)  # noqa: E731
    grid, reps = grid_of(truth, (4, 16), replicate_sd=0.01)
    fit = recommend(grid, reps, 0.95)
    assert fit["available"] and fit["r2"] == pytest.approx(1.0)
    assert fit["lines"]["16"]["c"] == pytest.approx(-0.004) and fit["lines"]["4"]["c"] == pytest.approx(0.0, abs=1e-12)
    verdicts = {b["trr_band"]: b["recommended_rank"] for b in fit["bands"]}
    assert verdicts["0-30"] == 16 and verdicts["80-100"] == 4


def test_three_ranks_can_recommend_the_middle_one():
    """A model linear in log2(rank) can only ever name an end of the grid."""
    truth = lambda r, t: {4: 2.0, 16: 3.0, 64: 2.2}[r]  # noqa: E731
    fit = recommend(*grid_of(truth, (4, 16, 64), replicate_sd=0.05), 0.95)
    assert {b["recommended_rank"] for b in fit["bands"]} == {16}


def test_no_rank_effect_is_said_so_not_a_coin_flip():
    """Old: with no rank effect and 1 point of noise the recommendation flipped between the grid's ends."""
    rng = np.random.default_rng(1)
    flat = lambda r, t: 50.0  # noqa: E731
    verdicts = []
    for _ in range(40):
        fit = recommend(*grid_of(flat, (4, 16), noise=1.0, rng=rng), 0.95)
        verdicts += [b["verdict"] for b in fit["bands"]]
    assert np.mean([v == NO_EVIDENCE for v in verdicts]) >= 0.9


def test_only_bands_the_data_reach_get_an_answer():
    """Old: every band, 80-100 included, was answered from a line extrapolated past the data."""
    assert [b for b, _ in band_points([0.0, 45.0])] == ["0-30", "30-60"]
    assert band_points([0.0, 60.0, 86.0])[-1] == ("80-100", 83.0)
    fit = recommend(*grid_of(lambda r, t: r / 10 + 0 * t, (4, 16), replicate_sd=0.01), 0.95)
    assert fit["bands_outside_data"] == []
    grid, reps = grid_of(lambda r, t: 1.0, (4, 16), replicate_sd=0.01)
    for r in grid:
        del grid[r][86.0], reps[r][86.0]
    assert recommend(grid, reps, 0.95)["bands_outside_data"] == ["80-100"]


def test_a_rank_without_data_is_never_recommended():
    """Old: with one rank column empty it recommended the rank that had no data."""
    grid, reps = grid_of(lambda r, t: 1.0 + r, (4, 16, 64), replicate_sd=0.01)
    grid[64] = {t: float("nan") for t in TRR}
    fit = recommend(grid, reps, 0.95)
    assert fit["dropped_ranks"] == [64] and {b["best_rank"] for b in fit["bands"]} == {16}
    grid.pop(4)
    assert recommend(grid, reps, 0.95)["available"] is False


def test_a_band_without_a_measured_level_is_interpolated():
    """Levels 0, 60 and 86: the 30-60 band holds none of them (60 belongs to 60-80), so its answer comes
    from the fitted lines alone; 0-30, 60-80 and 80-100 each hold one."""
    fit = recommend(*grid_of(lambda r, t: r / 10, (4, 16), replicate_sd=0.01), 0.95)
    flags = {b["trr_band"]: b["interpolated"] for b in fit["bands"]}
    assert flags == {"0-30": False, "30-60": True, "60-80": False, "80-100": False}


def test_no_rank_difference_within_the_margin_is_called_equivalent():
    flat = lambda r, t: 3.0  # noqa: E731
    tight = recommend(*grid_of(flat, (4, 16), replicate_sd=0.005), 0.95, margin=0.1)
    assert all(b["verdict"] == f"{NO_EVIDENCE}; equivalent within ±0.1" and b["equivalent"] for b in tight["bands"])
    loose = recommend(*grid_of(flat, (4, 16), replicate_sd=0.2), 0.95, margin=0.1)
    assert all(b["verdict"] == NO_EVIDENCE and b["equivalent"] is False for b in loose["bands"])
    assert all(b["equivalent"] is None for b in recommend(*grid_of(flat, (4, 16), replicate_sd=0.005), 0.95)["bands"])
