"""The paper-scale DAG builds here, without the model, the data or a network."""

import os
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


def dry_run(workdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/paper.yaml"], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=300)


def test_paper_dag_is_whole_with_an_empty_wiki_placeholder(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "data/paper/wiki.jsonl").write_text("")
    out = dry_run(workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    counts = job_counts(out.stdout)
    # per dataset, x 3 seeds: 7 variants + 10 capacity tiers + r4 x 3 items + r4 x 3 variants = 69
    # (the r16 cells of both rank grids are capacity and compression runs, trained once)
    assert counts["download_dataset"] == 1 and counts["prepare"] == 2 and counts["compress"] == 7
    assert counts["train"] == 138 and counts["evaluate"] == 18
    assert "resources/datasets/longmemeval/longmemeval_s_cleaned.json" in out.stdout


def test_missing_dataset_without_a_source_is_one_clear_line(tmp_path):
    out = dry_run(copy_workflow(tmp_path))
    assert out.returncode != 0
    assert ("datasets.wiki.path: data/paper/wiki.jsonl does not exist; put the wiki_jsonl file there"
            in out.stderr + out.stdout)
