"""The paper-scale DAG builds here, without the model, the data or a network."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from test_e2e import job_counts


def copy_workflow(tmp_path: Path) -> Path:
    for name in ("Snakefile", "config.yaml", "config", "workflow", "envs", "data", "profiles"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", *(args or ["-n"]), "--configfile", "config/paper.yaml"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


def test_paper_dag_is_whole_with_an_empty_wiki_placeholder(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "data/paper/wiki.jsonl").write_text("")
    out = dry_run(workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout)
    # per dataset, x 3 seeds: 9 variants (the seed's 7 and 2 rewrites) + 10 capacity tiers + r4 x 3 items
    # + r4 x 3 variants = 75 (the r16 cells of both rank grids are capacity and compression runs, trained once)
    assert counts["download_dataset"] == 1 and counts["prepare"] == 2 and counts["train"] == 150
    # the 5 summary levels and 2 rewrites on GPUs: wiki in one job per variant, longmemeval in 8 shards per
    # variant, gathered; original_text and ext (no model) one CPU job each for both datasets
    assert counts["compress"] == 7 and counts["compress_shard"] == 56 and counts["gather_shards"] == 7
    assert counts["compress_cpu"] == 2
    # each dataset at the seed study's own targets: LongMemEval's l2 at TRR 96, wiki's l1 at 35.2
    assert re.search(r'--variant summ_l2_light --datasets longmemeval .*"target_trr":96\.0', out.stdout)
    assert re.search(r'--variant summ_l1_slight --datasets wiki .*"target_trr":35\.2', out.stdout)
    # Qwen3-8B is fetched once, at model.revision, by a local job; every GPU job loads that directory
    assert counts["fetch_model"] == 1 and "resources/models/Qwen--Qwen3-8B@main" in out.stdout
    # chunks of at most 8 runs, keyed by the runs' hashes (their count is what the hashes give; stable)
    # the paper's judge is an endpoint (gpt-4o): its jobs are the light judge_endpoint rules, no GPU
    assert counts["evaluate"] == counts["judge_endpoint"] == 30 and counts["judge_controls_endpoint"] == 2
    assert "judge" not in counts and counts["decompose"] == 9
    assert "resources/datasets/longmemeval/longmemeval_s_cleaned.json" in out.stdout


def test_missing_dataset_without_a_source_stops_the_run_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path)
    line = ("datasets.wiki.path: data/paper/wiki.jsonl does not exist; put the wiki_jsonl file there")
    out = dry_run(workdir)
    assert out.returncode == 0 and line in out.stdout + out.stderr  # a dry run shows the DAG and says what is missing
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "config/paper.yaml"],
                         cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and line in run.stderr and not (workdir / "results").exists()


def test_lint_unlock_and_report_work_before_the_data_exist(tmp_path):
    """The missing-dataset check runs when a job needs the file, not at parse time."""
    workdir = copy_workflow(tmp_path)
    assert dry_run(workdir, "--lint").returncode == 0
    assert dry_run(workdir, "--unlock").returncode == 0
    # --report builds the DAG without the data; it can only complain that there are no results yet
    out = dry_run(workdir, "--report", str(tmp_path / "r.zip"))
    assert "Creating report..." in out.stdout + out.stderr and "does not exist; put the" not in out.stderr.split(
        "Building DAG")[-1]


def test_the_example_study_of_every_kind_dry_runs_and_plan_prices_it(tmp_path):
    """config/examples/own-method.yaml: one variant of every kind and two rewrites, read alone (no config.yaml)."""
    workdir = copy_workflow(tmp_path)
    shutil.copytree(REPO / "scripts", workdir / "scripts")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/examples/own-method.yaml"],
                         cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout)
    # l3, l5 and the two rewrites are written by the model; original, textrank, the command and the file on CPUs
    assert counts["compress"] == 4 and counts["compress_cpu"] == 4 and counts["prepare"] == 1
    assert counts["train"] == 8 + 3 and counts["decompose"] == 8  # 8 variants at r16, 3 of them again at r4
    assert "longmemeval" not in out.stdout  # the sample LongMemEval of config.yaml does not run beside the study
    # the command line and its script's sha256 are the job's params: editing the script reruns the variant
    assert '"command":["python3","scripts/compressors/first_sentences.py","--sentences","2"]' in out.stdout
    assert '"files_sha256":{"scripts/compressors/first_sentences.py":"' in out.stdout
    plan = subprocess.run(["lorapress", "plan", "--configfile", "config/examples/own-method.yaml",
                           "--format", "json"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-2000:]
    compress = next(s for s in json.loads(plan.stdout)["stages"] if s["stage"] == "compress")
    assert compress["jobs"] == 8 and compress["device_jobs"] == 4 and compress["generate_tokens"] > 0


def test_a_hub_compressor_is_fetched_once_and_loaded_by_its_variants_jobs(tmp_path):
    """The compressor apart from the model that learns: a hub id is fetched by the local fetch_model rule, at its
    own revision, and the variant's compress jobs load that directory (the base model still trains)."""
    workdir = copy_workflow(tmp_path)
    (workdir / "study.yaml").write_text(
        "compression:\n  variants:\n    original_text: {}\n    summ_l5_extreme: {}\n"
        "    qwen_l5: {kind: generate, target_trr: 90, prompt: '{text} Summarize.', compressor: Qwen/Qwen2.5-7B-Instruct,"
        " compressor_revision: 0123456789abcdef0123456789abcdef01234567}\n"
        "experiments: {rank_compression: {variants: [original_text, summ_l5_extreme]}}\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "study.yaml"], cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout)
    assert counts["fetch_model"] == 1 and counts["convert_model"] == 1 and counts["compress"] == 2
    hub = "resources/models/Qwen--Qwen2.5-7B-Instruct@0123456789abcdef0123456789abcdef01234567"
    assert f"--model={hub}" in out.stdout and "--hub Qwen/Qwen2.5-7B-Instruct --revision 0123456789abcdef" in out.stdout
    assert "--variant summ_l5_extreme" in out.stdout and "--model=resources/models/smollm2-135m-instruct" in out.stdout
