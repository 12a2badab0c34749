"""The tiny pipeline through `--profile profiles/slurm` on a real single-node SLURM.

scripts/slurm/start_slurm.sh installs (Debian packages) and starts slurmctld, slurmd,
munge and slurmdbd with a private MariaDB on loopback; the test stops only the daemons
it started. Needs root (as in CI); skipped otherwise.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]

SLURM_DIR = "/tmp/lorapress-slurm"
# The local node has no GPU and 2 cores: the cluster profile's sizes are overridden here only.
# (Command-line --set-resources replaces the profile's whole section, so every heavy rule is listed.)
HEAVY = ("compress", "train", "evaluate", "judge", "judge_controls", "decompose")
LOCAL = ["--default-resources", "slurm_partition=debug", "mem_mb=1000", "runtime=30",
         "--set-resources", *(f"{rule}:{key}={value}" for rule in HEAVY
                              for key, value in (("gpu", 0), ("mem_mb", 5000), ("cpus_per_task", 1), ("runtime", 30))),
         "convert_model:mem_mb=4000", "stats:mem_mb=2000", "aggregate:mem_mb=2000", "report:mem_mb=2000",
         "--set-threads", *(f"{rule}=1" for rule in HEAVY),
         "--slurm-init-seconds-before-status-checks", "8", "--jobs", "2"]


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root (CI runs as root)")
    env = {**os.environ, "SLURM_CI_DIR": SLURM_DIR}
    started = subprocess.run(["bash", str(REPO / "scripts/slurm/start_slurm.sh")], env=env, capture_output=True,
                             text=True, timeout=900)
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    print(started.stdout[-1500:])
    yield
    stopped = subprocess.run(["bash", str(REPO / "scripts/slurm/stop_slurm.sh")], env=env, capture_output=True,
                             text=True, timeout=300)
    print(stopped.stdout[-1500:])


def test_tiny_pipeline_runs_through_sbatch(slurm, tmp_path):
    for name in ("Snakefile", "config.yaml", "workflow", "envs", "data", "profiles"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    shutil.copy(REPO / "tests/configs/slurm.yaml", tmp_path / "slurm.yaml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = ["timeout", "1500", sys.executable, "-m", "snakemake", "results/report.html", "--profile", "profiles/slurm",
           *LOCAL, "--configfile", "slurm.yaml"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    summary = [line for line in out.stderr.splitlines() if "steps" in line or "SLURM jobid" in line or "Error" in line]
    print("\n".join(summary[-30:]))
    assert out.returncode == 0, out.stderr[-6000:]
    assert (tmp_path / "results/report.html").stat().st_size > 10_000
    import pandas as pd

    table = pd.read_csv(tmp_path / "results/tables/compression_wiki.csv")
    assert set(table["condition"]) == {"baseline", "original_text"} and table["ci_low"].notna().all()

    # every job went through SLURM and finished there (sacct works thanks to slurmdbd)
    sacct = subprocess.run(["sacct", "-n", "-X", "-P", "-S", "now-1hour", "-o", "JobID,State"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    rules = {"convert_model", "prepare", "compress", "stats", "train", "evaluate", "judge", "judge_controls",
             "aggregate", "report"}
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", out.stderr + out.stdout))
    completed = {line.split("|")[0] for line in sacct if line.split("|")[1] == "COMPLETED"}
    assert len(submitted) >= len(rules) and submitted <= completed
