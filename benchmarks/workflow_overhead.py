"""Workflow overhead: dry-run time of the paper config, no-op rerun time after the default run, and
how many jobs each kind of edit reruns on the completed default run: one level's prompt, one more
capacity tier, a function appended to aggregate.py, one appended to train.py (in a copy of the
library, on PYTHONPATH: the repository's own files are not touched).

    python benchmarks/workflow_overhead.py [--runs 5]
Run from the repository root after `make run`.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from common import save, timed

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def job_counts(text: str) -> dict:
    counts = {}
    for line in text.split("Job stats:")[-1].splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) not in ("total", "all"):
            counts[m.group(1)] = int(m.group(2))
    return counts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    run = lambda cmd, cwd=".": subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)  # noqa: E731

    with tempfile.TemporaryDirectory() as tmp:  # the paper DAG with an empty Wiki placeholder
        for name in ("Snakefile", "config.yaml", "config", "workflow", "envs", "data", "profiles"):
            (shutil.copytree if Path(name).is_dir() else shutil.copy)(name, Path(tmp) / name)
        (Path(tmp) / "data/paper/wiki.jsonl").write_text("")
        paper_s, paper_times, out = timed(lambda: run([*SNAKEMAKE, "--configfile", "config/paper.yaml", "-n"], tmp),
                                          args.runs)
        paper_jobs = job_counts(out.stdout)

    noop_dry_s, noop_dry_times, out = timed(lambda: run([*SNAKEMAKE, "-n", "results/report.html"]), args.runs)
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout[-2000:]
    noop_run_s, noop_run_times, _ = timed(lambda: run([*SNAKEMAKE, "--cores", "8", "results/report.html"]), args.runs)

    config = yaml.safe_load(Path("config.yaml").read_text())
    config["compression"]["levels"]["summ_l3_medium"]["prompt"] += " Be brief."
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as edited:
        yaml.safe_dump(config, edited)
        edited.flush()
        out = run([*SNAKEMAKE, "-n", "results/report.html", "--configfile", edited.name])
    edit_jobs = job_counts(out.stdout)
    total = sum(job_counts(run([*SNAKEMAKE, "-n", "--forceall", "results/report.html"]).stdout).values())

    config = yaml.safe_load(Path("config.yaml").read_text())
    items = config["experiments"]["capacity"]["items"]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as edited:
        yaml.safe_dump({"experiments": {"capacity": {"items": [6, 9, *items[1:]]}}}, edited)
        edited.flush()
        tier_jobs = job_counts(run([*SNAKEMAKE, "-n", "results/report.html", "--configfile", "config.yaml",
                                    edited.name]).stdout)
    code_jobs = {}
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree("src", Path(tmp) / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        for module in ("aggregate.py", "train.py"):
            path = Path(tmp) / "src/lorapress" / module
            original = path.read_text()
            path.write_text(original + "\n\ndef _appended_for_a_benchmark():\n    return None\n")
            out = subprocess.run([*SNAKEMAKE, "-n", "results/report.html"], capture_output=True, text=True, env=env)
            code_jobs[module] = job_counts(out.stdout)
            path.write_text(original)
    save("workflow_overhead", {
        "command": f"python benchmarks/workflow_overhead.py --runs {args.runs}",
        "paper_dry_run": {"median_s": paper_s, "times_s": paper_times, "jobs": paper_jobs,
                          "total_jobs": sum(paper_jobs.values())},
        "noop_dry_run": {"median_s": noop_dry_s, "times_s": noop_dry_times},
        "noop_run": {"median_s": noop_run_s, "times_s": noop_run_times},
        "one_level_prompt_edit": {"reruns": edit_jobs, "rerun_jobs": sum(edit_jobs.values()), "of_total": total},
        "one_more_capacity_tier": {"reruns": tier_jobs, "rerun_jobs": sum(tier_jobs.values())},
        "code_edits": {m: {"reruns": j, "rerun_jobs": sum(j.values())} for m, j in code_jobs.items()},
    })


if __name__ == "__main__":
    main()
