from lorapress import BASELINE, VARIANTS
from lorapress.experiments import Run, eval_chunks, experiment_runs, runs


def config(**evaluate):
    return {
        "datasets": {"wiki": {}},
        "compression": {"variants": list(VARIANTS)},
        "train": {"rank": 8, "seeds": [0, 1]},
        "experiments": {"compression": {"enabled": True}},
        "evaluate": {"adapters_per_engine": 4, **evaluate},
    }


def test_compression_runs_every_variant_per_seed_plus_one_baseline():
    pairs = experiment_runs(config(), "wiki")
    assert sum(r.is_baseline for _, r in pairs) == 1
    assert len(pairs) == 1 + len(VARIANTS) * 2
    assert runs(config(), "wiki")[0].condition == BASELINE


def test_run_ids_round_trip_and_name_the_adapter_path():
    run = Run("wiki", "summ_l3_medium", 16, 100, 2)
    assert run.adapter_dir == "results/adapters/wiki/summ_l3_medium/r16_n100_s2"
    assert Run.from_id("wiki", run.run_id) == run
    assert Run.from_id("wiki", BASELINE).fields() == {"dataset": "wiki", "condition": BASELINE, "rank": 0,
                                                      "items": 0, "seed": 0}


def test_chunks_cover_every_run_once_within_the_cap():
    chunks = eval_chunks(config(), "wiki")
    flat = [r for c in chunks.values() for r in c]
    assert len(flat) == len(set(flat)) == 15 and max(len(c) for c in chunks.values()) <= 4


def test_adding_a_run_changes_only_the_chunk_it_falls_in():
    """Old: positional slices of the sorted runs, so one added run shifted every later chunk."""
    base = config()
    base["train"]["seeds"] = [0]  # one tier = one run
    base["experiments"]["capacity"] = {"items": [4, 8, 16, 32, 64, 128]}
    before = eval_chunks(base, "wiki")
    for n in (12, 25, 50, 100, 150, 200, 250, 300):
        grown = config()
        grown["train"]["seeds"] = [0]
        grown["experiments"]["capacity"] = {"items": [4, 8, 16, 32, 64, 128, n]}
        after = eval_chunks(grown, "wiki")
        changed_before = {name for name, runs in before.items() if after.get(name) != runs}
        changed_after = {name for name, runs in after.items() if before.get(name) != runs}
        new_runs = {r for c in after.values() for r in c} - {r for c in before.values() for r in c}
        # what changed is one chunk's runs (possibly split in two), plus the new runs
        reran = {r for name in changed_after for r in after[name]}
        assert len(changed_before) <= 1 and reran - new_runs <= {r for name in changed_before for r in before[name]}


def test_grids_share_identical_runs():
    cfg = config()
    cfg["train"]["seeds"] = [0]
    cfg["train"]["rank"] = 16
    cfg["experiments"].update(
        capacity={"items": [4, 8]},
        rank_items={"ranks": [4, 16], "items": [8, 16]},
        rank_compression={"ranks": [4, 16], "variants": ["original_text", "summ_l5_extreme"]},
    )
    pairs = experiment_runs(cfg, "wiki")
    assert {e for e, _ in pairs} == {"compression", "capacity", "rank_items", "rank_compression"}
    unique = runs(cfg, "wiki")
    # baseline + 7 variants + capacity n4, n8 + rank_items r4 x 2 and r16 n16 (r16 n8 is capacity's)
    # + rank_compression r4 x 2 (its r16 runs are the compression runs)
    assert len(unique) == 1 + 7 + 2 + 2 + 1 + 2
    assert len(pairs) == 8 + 3 + 5 + 5
    assert Run("wiki", "original_text", 16, 8, 0) in unique


def test_disabled_or_other_dataset_gives_no_runs():
    cfg = config()
    cfg["experiments"]["compression"]["datasets"] = ["longmemeval"]
    assert experiment_runs(cfg, "wiki") == []
