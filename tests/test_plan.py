"""`lorapress plan`: token and GPU-hour estimates of a config, before any compute."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, wiki_record, write_jsonl
from lorapress import cli
from lorapress.experiments import eval_chunks, runs
from lorapress.plan import (
    LONGMEMEVAL_REFERENCE, Counts, Figure, Item, Profile, Tokens, build_plan, count_questions, job_seconds, load_config,
    merge, reference_counts, reference_for, runtime_minutes, stage_compress, stage_evaluate, stage_limits, stage_train,
)
from lorapress.prepare import LONGMEMEVAL_TYPES

T = Tokens(per_char=0.25, per_message=0.0, retry_share=0.3, answer_fill=1.0)


def base_config(**overrides) -> dict:
    """The repository's config.yaml with its defaults filled, `overrides` merged on top."""
    from lorapress.config import normalise_variants

    config, schema = load_config(REPO / "config.yaml", [])
    config = merge(config, overrides)
    if "variants" in overrides.get("compression", {}):  # a list of seed names, as a user may write it
        normalise_variants(config, overrides["compression"]["variants"], schema)
    return config


def only_original(epochs: int = 3) -> dict:
    """One trained run per dataset: original_text at train.rank, all items, one seed."""
    off = {"enabled": False}
    return base_config(
        compression={"variants": ["original_text", "summ_l2_light"]},
        train={"epochs": epochs, "seeds": [0]},
        experiments={"compression": {"enabled": True, "variants": ["original_text"]},
                     "capacity": off, "rank_items": off, "rank_compression": off})


def profile(**values) -> Profile:
    figures = {"prefill_tokens_per_s": 1000, "generate_tokens_per_s": 100, "lora_time_factor": 2.0,
               "hf_prefill_tokens_per_s": 500, "hf_generate_tokens_per_s": 50, "train_tokens_per_s": 100,
               "engine_start_s": 20, "model_load_s": 5, "train_start_s": 10, **values}
    return Profile("test", "hand-made", "none", False, {k: Figure(v, f"test figure {k}") for k, v in figures.items()}, {}, "t")


# ---------------------------------------------------------------- the estimator, by hand
def two_items() -> dict[str, Counts]:
    # title 2 chars + "\n\n" + text: (2 + 2 + 400) / 4 = 101 and (2 + 2 + 800) / 4 = 201 tokens, + EOS each
    items = (Item("a", 2, 400), Item("b", 2, 800))
    questions = count_questions([{"question": "Who?", "answer": "Ann", "distractor": "Bob", "question_type": "wiki",
                                  "item_ids": ["a"]}])
    return {"wiki": Counts(items, questions, "hand-made")}


def test_train_tokens_are_epochs_times_the_items_tokens():
    stage = stage_train(only_original(epochs=3), two_items(), T)
    assert len(stage.jobs) == 1  # the baseline trains nothing
    assert stage.jobs[0].tokens[("train", "train", False)] == 3 * ((101 + 1) + (201 + 1))
    seconds, used = job_seconds(stage.jobs[0], profile().figures)
    assert seconds == pytest.approx(10 + 912 / 100)  # train_start_s + tokens / train_tokens_per_s
    assert used == {"train_start_s", "train_tokens_per_s"}


def test_a_capacity_tier_trains_only_its_first_items():
    config = merge(only_original(epochs=2), {"experiments": {"compression": {"enabled": False},
                                                             "capacity": {"enabled": True, "items": [1, 2]}}})
    tokens = sorted(job.tokens[("train", "train", False)] for job in stage_train(config, two_items(), T).jobs)
    assert tokens == [2 * 102, 2 * (102 + 202)]


def test_summary_replies_land_on_target_with_the_retry_share():
    config = only_original()
    level = config["compression"]["variants"]["summ_l2_light"]  # target 50%, with a retry prompt
    counts = {"wiki": Counts((Item("a", 0, 4000),), (), "hand-made")}  # 1000 tokens: one piece
    jobs = stage_compress(config, counts, T).jobs
    assert [j.gpu for j in jobs] == [False, True]  # original_text runs no model
    overhead = len(level["prompt"].replace("{text}", "")) / 4
    assert jobs[1].tokens[("vllm", "generate", False)] == pytest.approx(1000 * 0.5 * 1.3)
    assert jobs[1].tokens[("vllm", "prefill", False)] == pytest.approx((1000 + overhead) * 1.3)


def test_every_run_answers_every_question_and_control_to_the_cap():
    config = merge(only_original(), {"evaluate": {"max_tokens": 10, "self_check": {"questions": 0}},
                                     "resources": {"gpu": 1}})
    counts = two_items()
    control = count_questions([{"question": "Capital of France?", "answer": "Paris", "question_type": "control"}])
    (job,) = stage_evaluate(config, counts, control, T).jobs  # baseline + one adapter: one chunk
    assert job.starts == ["vllm"]
    assert job.tokens[("vllm", "generate", False)] == 10 * 2  # baseline: (1 question + 1 control) × 10
    assert job.tokens[("vllm", "generate", True)] == 10 * 2  # the adapter's, scaled by lora_time_factor


def test_totals_are_the_sum_of_the_stages():
    plan = build_plan(only_original(), two_items(), (), profile(), T)
    for key in ("prefill_tokens", "generate_tokens", "train_tokens", "job_hours"):
        assert plan["total"][key] == pytest.approx(sum(r[key] for r in plan["stages"]))
    assert plan["total"]["train_tokens"] == 912


# ---------------------------------------------------------------- the paper config, end to end
def lme_question(k: int, sessions: int = 5) -> dict:
    ids = [f"q{k}_s{j}" for j in range(sessions)]
    return {
        "question_id": f"q{k}" + ("_abs" if k == 7 else ""),
        "question_type": LONGMEMEVAL_TYPES[k % len(LONGMEMEVAL_TYPES)],
        "question": f"What did I name my {k}th plant?",
        "answer": f"Fern number {k}",
        "question_date": "2023/05/30 (Tue) 23:40",
        "haystack_session_ids": ids,
        "haystack_dates": [f"2023/05/{j + 1:02d} (Mon) 10:{k:02d}" for j in range(sessions)],
        "haystack_sessions": [[{"role": "user", "content": f"Session {j} of question {k}: I bought plant {k}. " * 8},
                               {"role": "assistant", "content": "That sounds lovely, tell me more. " * 6}]
                              for j in range(sessions)],
        "answer_session_ids": ids[:1],
    }


@pytest.fixture
def paper_dir(tmp_path: Path) -> Path:
    """The workflow's configs and schema with synthetic paper data: LongMemEval 20 questions × 5 sessions,
    wiki 10 articles × 2 questions."""
    for name in ("config.yaml", "config", "workflow"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "data/control").mkdir(parents=True)
    shutil.copy(REPO / "data/control/general.jsonl", tmp_path / "data/control/general.jsonl")
    lme = tmp_path / "resources/datasets/longmemeval/longmemeval_s_cleaned.json"
    lme.parent.mkdir(parents=True)
    lme.write_text(json.dumps([lme_question(k) for k in range(20)]))
    (tmp_path / "data/paper").mkdir()
    write_jsonl(tmp_path / "data/paper/wiki.jsonl", [
        wiki_record(i, text="A town with a long history. " * (20 + i),
                    questions=[{"question": f"When was Article {i} founded?", "answer": f"18{i:02d}"},
                               {"question": f"What colour is the bridge of Article {i}?", "answer": "red"}])
        for i in range(1, 11)])
    return tmp_path


def run_plan(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorapress", "plan", *args], cwd=workdir, capture_output=True,
                          text=True, timeout=120)


def paper_config(workdir: Path) -> dict:
    """config.yaml with config/paper.yaml on top, merged independently of lorapress.plan."""
    def deep(a, b):
        return {**a, **{k: deep(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                        for k, v in b.items()}}
    return deep(yaml.safe_load((workdir / "config.yaml").read_text()),
                yaml.safe_load((workdir / "config/paper.yaml").read_text()))


def test_paper_config_plan_matches_its_dag(paper_dir):
    out = run_plan(paper_dir, "--configfile", "config/paper.yaml", "--format", "json", "--out", "plan.json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert json.loads((paper_dir / "plan.json").read_text()) == plan
    assert plan["profile"]["name"] == "h100_vllm_8b" and plan["gpus_per_job"] == 1
    assert plan["datasets"]["longmemeval"]["items"] == 100 and plan["datasets"]["longmemeval"]["questions"] == 20
    assert plan["datasets"]["wiki"]["items"] == 10 and plan["datasets"]["wiki"]["questions"] == 20

    config = paper_config(paper_dir)
    datasets = sorted(config["datasets"])
    stages = {r["stage"]: r for r in plan["stages"]}
    trained = sum(not r.is_baseline for d in datasets for r in runs(config, d))
    chunks = sum(len(eval_chunks(config, d)) for d in datasets)
    variants = len(config["compression"]["variants"])
    assert stages["train"]["jobs"] == trained == 150  # the known paper DAG (tests/test_paper_dag.py)
    shards = config["compression"]["shards"]["longmemeval"]  # wiki shares one job per variant
    # each summary level and rewrite (7 generate variants): wiki's job, the shards, a gather; original_text
    # and ext: one CPU job each
    assert stages["compress"]["jobs"] == 7 * (1 + shards + 1) + (variants - 7)
    assert stages["compress"]["device_jobs"] == 7 * (1 + shards)
    assert stages["evaluate"]["jobs"] == stages["judge"]["jobs"] == chunks  # hash-keyed chunks of <= 8 runs
    assert stages["judge_controls"]["jobs"] == len(datasets)
    assert stages["decompose"]["jobs"] == variants  # one model load per variant serves every dataset
    assert plan["other_jobs"] == {"prepare": 2, "stats": 1, "aggregate": 1, "report": 1}

    total = plan["total"]
    assert total["jobs"] == sum(r["jobs"] for r in plan["stages"]) + sum(plan["other_jobs"].values())
    for key in ("prefill_tokens", "generate_tokens", "train_tokens", "gpu_hours"):
        assert total[key] == pytest.approx(sum(r[key] for r in plan["stages"]))
    assert 0 < total["gpu_hours"] < math.inf
    for row in plan["stages"]:  # the paper's judge is an endpoint: its jobs hold no GPU
        assert (row["gpu_hours"] > 0 or row["stage"] in ("judge", "judge_controls")) and \
            math.isfinite(row["gpu_hours"]), row["stage"]
        assert row["figures"] or row["stage"] in ("judge", "judge_controls"), row["stage"]
        assert all(f["source"] and f["value"] > 0 for f in row["figures"].values()), row["stage"]
    assert "train_tokens_per_s" in stages["train"]["figures"]
    assert {"prefill_tokens_per_s", "generate_tokens_per_s", "lora_time_factor"} <= set(stages["evaluate"]["figures"])
    assert stages["train"]["train_tokens"] > 0 and stages["compress"]["generate_tokens"] > 0
    assert any("characters × 0.25" in a for a in plan["assumptions"])

    text = run_plan(paper_dir, "--configfile", "config/paper.yaml")
    assert text.returncode == 0, text.stderr
    assert "GPU-h" in text.stdout and "train_tokens_per_s" in text.stdout and "total" in text.stdout


# ---------------------------------------------------------------- missing data: one line, exit 2
@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    for name in ("config.yaml", "config", "workflow", "data"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "missing.yaml").write_text(yaml.safe_dump({"datasets": {
        "wiki": {"format": "wiki_jsonl", "path": "data/none/wiki.jsonl"},
        "longmemeval": {"format": "longmemeval", "path": "resources/datasets/longmemeval/longmemeval_s_cleaned.json",
                        "download": {"hf_dataset": "xiaowu0162/longmemeval-cleaned",
                                     "filename": "longmemeval_s_cleaned.json"}}}}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def error_line(capsys, *argv: str) -> str:
    assert cli.main(["plan", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_a_missing_dataset_is_one_clear_line(workdir, capsys):
    # the official LongMemEval file has a reference size: only wiki is missing
    err = error_line(capsys, "--configfile", "missing.yaml")
    assert "1 dataset(s) missing: datasets.wiki.path: data/none/wiki.jsonl does not exist" in err
    assert "--assume wiki=" in err and "longmemeval" not in err


def test_every_missing_dataset_is_named_in_one_call(workdir, capsys):
    (workdir / "two.yaml").write_text(yaml.safe_dump({"datasets": {
        "wiki": {"format": "wiki_jsonl", "path": "data/none/wiki.jsonl"},
        "mine": {"format": "longmemeval", "path": "data/none/my_history.json"},  # not an official file name
        "official": {"format": "longmemeval", "path": "resources/datasets/official/longmemeval_s_cleaned.json",
                     "download": {"hf_dataset": "xiaowu0162/longmemeval-cleaned",
                                  "filename": "longmemeval_s_cleaned.json"}}}}))
    err = error_line(capsys, "--configfile", "two.yaml")
    assert err.count("does not exist") == 2 and "2 dataset(s) missing" in err
    assert "datasets.mine.path: data/none/my_history.json" in err and "datasets.wiki.path: data/none/wiki.jsonl" in err


def test_a_missing_official_longmemeval_file_is_planned_at_its_reference_size(workdir, capsys):
    assert cli.main(["plan", "--configfile", "missing.yaml", "--assume", "wiki=10,20,20000", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    lme = plan["datasets"]["longmemeval"]
    # 500 questions x 48 sessions; 500 x 115k tokens x 4 characters per token
    assert (lme["items"], lme["questions"], lme["chars"]) == (24_000, 500, 230_000_000)
    assert lme["source"] == "reference: longmemeval_s_cleaned.json, not downloaded yet"
    assert plan["other_jobs"]["download_dataset"] == 1
    assert any(a.startswith("longmemeval_s_cleaned.json (not downloaded)") for a in plan["assumptions"])
    text = run_plan(workdir, "--configfile", "missing.yaml", "--assume", "wiki=10,20,20000")
    assert "[reference: longmemeval_s_cleaned.json, not downloaded yet]" in text.stdout, text.stderr


def test_reference_sizes_follow_the_file_and_the_question_filters():
    s = {"format": "longmemeval", "path": "x/longmemeval_s_cleaned.json"}
    assert reference_for(s) is LONGMEMEVAL_REFERENCE["longmemeval_s_cleaned.json"]
    by_download = {"format": "longmemeval", "path": "resources/datasets/l/lme.json",
                   "download": {"hf_dataset": "h", "filename": "longmemeval_m_cleaned.json"}}
    m = reference_for(by_download)
    assert (m.items, m.questions, m.chars) == (250_000, 500, 3_000_000_000)
    assert reference_for({"format": "wiki_jsonl", "path": "longmemeval_s_cleaned.json"}) is None
    assert reference_for({"format": "longmemeval", "path": "mine.json"}) is None
    oracle = reference_for({"format": "longmemeval", "path": "longmemeval_oracle.json"})
    assert (oracle.items, oracle.chars) == (1_000, 4_000_000)
    ref = LONGMEMEVAL_REFERENCE["longmemeval_s_cleaned.json"]
    pref = reference_counts({**s, "question_types": ["single-session-preference"]}, ref, 80, 20)
    assert len(pref.questions) == 30 and len(pref.items) == 24_000 * 30 // 500 and pref.chars == 230_000_000 * 30 // 500
    assert len(reference_counts({**s, "limit": 20}, ref, 80, 20).questions) == 20


# ---------------------------------------------------------------- runtime limits of the SLURM profile
def test_runtime_minutes():
    assert [runtime_minutes(v) for v in (45, "90", "2h", "1h30m", "1d", "30min")] == [45, 90, 120, 90, 1440, 30]
    with pytest.raises(ValueError):
        runtime_minutes("soon")


def test_stage_limits_of_the_repository_profile():
    limits = stage_limits(yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text()))
    assert limits["train"] == (1440, "set-resources.train.runtime")
    assert limits["judge_controls"] == (240, "set-resources.judge_controls.runtime")
    assert limits["compress"][0] == 1440  # the lower of compress and compress_shard
    profile_ = {"default-resources": {"runtime": 60}, "set-resources": {"compress_shard": {"runtime": "2h"},
                                                                       "compress": {"runtime": 600}}}
    assert stage_limits(profile_)["compress"] == (120, "set-resources.compress_shard.runtime")


def test_a_job_longer_than_its_rules_runtime_is_a_warning():
    # 912 train tokens at 100 tokens/s + a 10 s start = 19.12 s: over a 0.25-minute limit, under 1 minute
    slow = build_plan(only_original(), two_items(), (), profile(), T,
                      limits={"train": (0.25, "set-resources.train.runtime")}, limits_file="p/config.yaml")
    train = next(r for r in slow["stages"] if r["stage"] == "train")
    assert train["longest_job_hours"] * 3600 == pytest.approx(19.12)
    assert any("train: the longest job is estimated at" in w and "(p/config.yaml set-resources.train.runtime)" in w
               for w in slow["warnings"])
    fine = build_plan(only_original(), two_items(), (), profile(), T,
                      limits={"train": (1.0, "default-resources.runtime")})
    assert not any("profile's limit" in w for w in fine["warnings"])


def test_assume_plans_without_the_files(workdir, capsys):
    argv = ["plan", "--configfile", "missing.yaml", "--format", "json",
            "--assume", "longmemeval=100,20,400000", "--assume", "wiki=10,20,20000"]
    assert cli.main(argv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["datasets"]["wiki"]["chars"] == 20000 and plan["datasets"]["longmemeval"]["items"] == 100
    assert plan["other_jobs"]["download_dataset"] == 1
    assert plan["profile"]["name"] == "cpu_embedded"  # config.yaml asks for no GPU


def test_a_config_error_is_one_line(workdir, capsys):
    (workdir / "bad.yaml").write_text("train: {epochs: 0}\n")
    assert "train.epochs" in error_line(capsys, "--configfile", "bad.yaml")


def test_a_figure_without_its_source_is_one_line(workdir, capsys):
    table = yaml.safe_load((workdir / "config/throughput.yaml").read_text())
    del table["profiles"]["cpu_embedded"]["figures"]["train_tokens_per_s"]["source"]
    (workdir / "t.yaml").write_text(yaml.safe_dump(table))
    err = error_line(capsys, "--throughput", "t.yaml")
    assert "profiles.cpu_embedded.figures.train_tokens_per_s: missing (needs value and source)" in err


def test_each_kind_is_priced_as_it_runs():
    """A rewrite's reply is longer than its source (TRR -100: twice); extract, command and file run no model."""
    config = base_config(compression={"variants": {
        "original_text": {}, "paraphrase": {"kind": "generate", "target_trr": -100, "prompt": "{text}\n\nRestate it.",
                                            "max_input_tokens": 512},
        "textrank": {"kind": "extract", "method": "textrank", "target_trr": 50},
        "lead": {"kind": "command", "command": "python3 lead.py"}, "given": {"kind": "file", "path": "x/{dataset}.jsonl"}}},
        experiments={e: {"enabled": False} for e in ("capacity", "rank_items", "rank_compression")})
    counts = {"wiki": Counts((Item("a", 0, 4000),), (), "hand-made")}  # 1000 tokens: two pieces of <= 512
    jobs = stage_compress(config, counts, T).jobs
    assert [j.gpu for j in jobs] == [False, True, False, False, False]
    assert jobs[1].tokens[("vllm", "generate", False)] == pytest.approx(2000)  # no retry prompt: no retry share
    overhead = len("\n\nRestate it.") / 4
    assert jobs[1].tokens[("vllm", "prefill", False)] == pytest.approx(1000 + 2 * overhead)
    train = stage_train(config, counts, T).jobs
    # one epoch (config.yaml) of the title (none), its separator and twice the text, + EOS
    assert [j.tokens[("train", "train", False)] for j in train][1] == pytest.approx((0 + 2 + 2 * 4000) / 4 + 1)
