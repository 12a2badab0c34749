"""The cluster rehearsal: the README's SLURM command, run from the repository root, through a real SLURM.

scripts/slurm/start_slurm.sh starts a single-node SLURM (slurmctld, slurmd, munge, slurmdbd with a private
MariaDB) on loopback whose node looks like a cluster's GPU node: partitions `cpu` and `gpu`, two GPUs as
GRES (fake device files: nothing computes on them, SLURM only counts them), 16 CPUs and 256 GB as
configured. The command is the README's, `snakemake --configfile config/paper.yaml --profile profiles/slurm
results/report.html`, plus tests/configs/rehearsal.yaml, which swaps only what this CPU machine forces (the
embedded model, float32, tiny data at paper.yaml's own paths, an offline judge): every profile loads as it
does for a user (profiles/default included), and every rule kind and experiment of the paper runs.

For every job of the DAG it asserts: it completed through sbatch (sacct); its sbatch and srun arguments are
the profile's for its rule (partition, memory, CPUs, GPUs, run time, no --ntasks-per-gpu); a GPU job sees
exactly one card and a job that needs none sees none; model conversion ran where Snakemake runs. And the
report is written. This SLURM (22.05) does not fail on --ntasks-per-gpu beside --cpus-per-task as newer ones
do (plugin #342, #373), so the arguments are asserted, not waited for. `sbatch` and `srun` are the real ones,
behind a shim on PATH that records their arguments (and the cards a job step sees) before calling them.

The run starts in the background with the test session (tests/conftest.py: the rest of the suite
runs beside it) and these tests run after the unit tests and the study of every kind's (tests/test_e2e.py);
tests/test_e2e_contents.py then reads what the run wrote. Needs root (as in CI); skipped otherwise.
"""

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, without_shims
from test_cluster_profile import GPU_RULES, repository_copy
from test_e2e import job_counts

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]

SLURM_DIR = "/tmp/lorapress-slurm"
EMBEDDED = "smollm2-135m-instruct"  # the study's model (rehearsal.yaml), converted by the run's first job
CONTROL_QUESTIONS = 2
STUDY = ("config/paper.yaml", "tests/configs/rehearsal.yaml")  # the README's study, and what this machine swaps
# the real binaries behind a recording shim; the job's environment (sbatch --export=ALL) keeps the shim first
SHIM = """#!/usr/bin/env bash
{record}
exec {real} "$@"
"""
RECORD_SBATCH = 'printf "%s\\n" "$@" > "$REHEARSAL_RECORD/sbatch.$$.$RANDOM.argv"'
RECORD_SRUN = ('{ printf "%s\\n" "$@"; echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"; } '
               '> "$REHEARSAL_RECORD/srun.${SLURM_JOB_ID:-none}.argv"')


def argv_value(argv: list[str], flag: str) -> str | None:
    """`--flag value`, `--flag=value` or `-f value` in an argument list."""
    for k, arg in enumerate(argv):
        if arg == flag and k + 1 < len(argv):
            return argv[k + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def study_copy(root: Path) -> Path:
    """The repository as a user has it, with tiny data where config/paper.yaml expects the real files (no
    download: the file is there): the rehearsed study, ready to run."""
    repository_copy(root)
    shutil.copy(root / "data/wiki/sample.jsonl", root / "data/paper/wiki.jsonl")
    lme = root / "resources/datasets/longmemeval/longmemeval_s_cleaned.json"
    lme.parent.mkdir(parents=True)
    shutil.copy(root / "data/longmemeval/sample.json", lme)
    control = root / "data/control/general.jsonl"  # answered by every run: a few questions suffice
    control.write_text("".join(control.read_text().splitlines(keepends=True)[:CONTROL_QUESTIONS]))
    return root


class Rehearsal:
    """The rehearsal's SLURM run, started in the background when the test session starts (tests/conftest.py):
    the rest of the suite runs beside it, in the cores its jobs leave idle (SLURM's queue, status checks, job
    steps starting), and its tests run after the unit tests."""

    def __init__(self, tmp_path_factory):
        self.slurm_env = {**os.environ, "SLURM_CI_DIR": SLURM_DIR, "PATH": without_shims(os.environ["PATH"])}
        self.error, self.process, self.stopper = None, None, None
        self.slurm_started = threading.Event()  # start_slurm.sh is done (its packages installed), or failed
        self.thread = threading.Thread(target=self._start, args=(tmp_path_factory,), daemon=True)
        self.thread.start()

    def _start(self, tmp_path_factory) -> None:
        try:
            try:
                started = subprocess.run(["bash", str(REPO / "scripts/slurm/start_slurm.sh")], env=self.slurm_env,
                                         capture_output=True, text=True, timeout=900)
            finally:
                self.slurm_started.set()
            self.slurm_log = started.stdout[-1500:]
            if started.returncode != 0:
                self.error = f"start_slurm.sh failed:\n{started.stdout[-3000:]}{started.stderr[-3000:]}"
                return
            self._submit(tmp_path_factory)
        except Exception as exc:  # reported by the test that waits for the run
            self.error = repr(exc)

    def _submit(self, tmp_path_factory) -> None:
        self.root = root = study_copy(tmp_path_factory.mktemp("repo"))
        shims, self.record = tmp_path_factory.mktemp("shims"), tmp_path_factory.mktemp("record")
        for name, line in (("sbatch", RECORD_SBATCH), ("srun", RECORD_SRUN)):
            (shims / name).write_text(SHIM.format(record=line, real=shutil.which(name)))
            (shims / name).chmod(0o755)
        env = {**self.slurm_env, "PATH": f"{shims}:{Path(sys.executable).parent}:{self.slurm_env['PATH']}",
               "REHEARSAL_RECORD": str(self.record)}
        for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
            del env[var]
        # the README's command, from the repository root, with the rehearsal's swaps on top of the paper config.
        # Two flags more, speed only, no sbatch or srun argument changes: the first status check of each wave of
        # jobs after 5 s, not the profile's 40; and one thread per job (the profile's 8 threads on 2 real cores
        # would only contend: a job's CPUs are the profile's cpus_per_task, which stays 8)
        heavy = [rule for rule in yaml.safe_load((root / "profiles/slurm/config.yaml").read_text())["set-threads"]]
        command = [sys.executable, "-m", "snakemake", "--configfile", *STUDY, "--profile", "profiles/slurm",
                   "results/report.html",
                   "--slurm-init-seconds-before-status-checks", "5", "--set-threads", *(f"{rule}=1" for rule in heavy)]
        self.output = root / "rehearsal.out"
        self.started = time.time()
        with open(self.output, "w") as out:
            self.process = subprocess.Popen(["timeout", "2400", *command], cwd=root, env=env, stdout=out,
                                            stderr=subprocess.STDOUT)

    def converted_model(self, timeout: float = 1200) -> Path | None:
        """The embedded model as the run's first job (a local rule) converted it, once that job is done; None if the
        run ended without it."""
        self.thread.join()
        if self.error or self.process is None:
            return None
        done = self.root / "results/benchmarks/model" / f"{EMBEDDED}.tsv"  # written once the job has finished
        deadline = time.time() + timeout
        while not done.is_file():
            if self.process.poll() is not None or time.time() > deadline:
                return None
            time.sleep(1)
        return self.root / "resources/models" / EMBEDDED

    def result(self) -> tuple[Path, Path, str, float]:
        """Wait for the run: (repository copy, recorded arguments, Snakemake's output, seconds)."""
        self.thread.join()
        if self.error:
            pytest.fail(self.error)
        print(self.slurm_log)
        returncode = self.process.wait()
        seconds = time.time() - self.started
        print(f"rehearsal: {seconds:.0f} s")
        log = self.output.read_text()
        if returncode != 0:  # the failed jobs' own logs first: they say why
            failed = re.findall(r"Error in rule \w+:.*?\n\s+log: (\S+)", log, re.S)
            logs = "\n".join(f"== {name}\n{(self.root / name).read_text()[-4000:]}" for name in dict.fromkeys(failed)
                             if (self.root / name).is_file())
            pytest.fail(f"rehearsal failed:\n{logs}\n{log[-5000:]}")
        return self.root, self.record, log, seconds

    def stop(self, wait: bool = True) -> None:
        """Stop the run if it is still going, and SLURM (once; in the background unless `wait`)."""
        if self.stopper is None:
            self.stopper = threading.Thread(target=self._stop, daemon=True)
            self.stopper.start()
        if wait:
            self.stopper.join()

    def _stop(self) -> None:
        self.thread.join()
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        stopped = subprocess.run(["bash", str(REPO / "scripts/slurm/stop_slurm.sh")], env=self.slurm_env,
                                 capture_output=True, text=True, timeout=300)
        print(stopped.stdout[-1500:])


@pytest.fixture(scope="module")
def rehearsal(background_rehearsal):
    if background_rehearsal is None:
        pytest.skip("a local SLURM needs root (CI runs as root)")
    yield background_rehearsal.result()
    background_rehearsal.stop(wait=False)  # nothing after these tests needs SLURM: it stops beside them


def submitted_jobs(record: Path) -> dict[str, dict]:
    """SLURM job id -> {rule, sbatch argv, srun argv, cards the job step saw}."""
    jobs = {}
    ids = {}
    for path in record.glob("sbatch.*.argv"):
        argv = path.read_text().splitlines()
        comment = argv_value(argv, "--comment")
        ids[comment] = argv
    sacct = subprocess.run(["sacct", "-n", "-X", "-P", "-S", "now-3hours", "-o", "JobID,JobName,Comment,State"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for line in sacct:
        job_id, name, comment, state = line.split("|")[:4]
        jobs[job_id] = {"name": name, "comment": comment, "state": state}
    out = {}
    for path in record.glob("srun.*.argv"):
        job_id = path.name.split(".")[1]
        lines = path.read_text().splitlines()
        out[job_id] = {"srun": lines[:-1], "cards": lines[-1].split("=", 1)[1]}
    return ids, jobs, out


def test_every_job_ran_through_sbatch_with_its_profiles_resources(rehearsal):
    root, record, log, _ = rehearsal
    profile = yaml.safe_load((root / "profiles/slurm/config.yaml").read_text())
    default, per_rule = profile["default-resources"], profile["set-resources"]
    by_comment, _, steps = submitted_jobs(record)
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", log))
    planned = job_counts(log)  # the run's "Job stats" table: every job of the DAG
    remote = sum(planned.values()) - planned.get("convert_model", 0)
    assert len(by_comment) == remote == len(submitted), (len(by_comment), remote, len(submitted))
    # the model is made where Snakemake runs (a local rule), never submitted
    assert planned["convert_model"] == 1 and not [c for c in by_comment if c.startswith("rule_convert_model")]
    rules = set()
    for comment, sbatch in by_comment.items():
        rule = comment.removeprefix("rule_").split("_wildcards_")[0]
        rules.add(rule)
        wanted = {**default, **per_rule.get(rule, {})}
        assert argv_value(sbatch, "-p") == wanted["slurm_partition"], (rule, sbatch)
        assert argv_value(sbatch, "-t") == str(wanted["runtime"]), (rule, sbatch)
        if "mem_mb" in per_rule.get(rule, {}):
            assert argv_value(sbatch, "--mem") == str(wanted["mem_mb"]), (rule, sbatch)
        assert f"--cpus-per-task={wanted['cpus_per_task']}" in sbatch, (rule, sbatch)
        assert not [a for a in sbatch if a.startswith("--ntasks-per-gpu")], (rule, sbatch)
        assert ("--gpus=1" in sbatch) == (rule in GPU_RULES), (rule, sbatch)
    assert rules >= GPU_RULES | {"prepare", "compress_cpu", "gather_shards", "stats", "aggregate", "report"}, rules
    # every job step: the profile's CPUs and GPUs, no --ntasks-per-gpu, and the cards it saw
    assert len(steps) == len(by_comment)
    for job_id, step in steps.items():
        options = [a for a in step["srun"] if a.startswith("-")]
        assert not [a for a in options if a.startswith("--ntasks-per-gpu")], step
        if "--gpus=1" in options:
            assert step["cards"] not in ("unset", "") and "," not in step["cards"], step  # one card of its own
        else:
            assert step["cards"] in ("unset", ""), step  # a job that needs no GPU holds none


def test_every_job_completed_and_the_report_is_written(rehearsal):
    root, record, log, seconds = rehearsal
    by_comment, jobs, _ = submitted_jobs(record)
    ids = set(re.findall(r"submitted with SLURM jobid (\d+)", log))
    assert ids and all(jobs[i]["state"] == "COMPLETED" for i in ids), {i: jobs.get(i) for i in ids}
    assert (root / "results/report.html").stat().st_size > 10_000
    table = pd.read_csv(root / "results/tables/compression_wiki.csv")
    assert set(table["condition"]) == {"baseline", "original_text", "summ_l5_extreme"}
    for name in ("capacity_wiki", "rank_compression_wiki", "rank_items_wiki"):
        assert (root / f"results/tables/{name}.csv").exists()
    # sharded levels were gathered into the file one job writes, and every shard had sessions to summarise
    shards = sorted((root / "results/compressed/longmemeval/shards").glob("summ_l5_extreme.*-of-2.jsonl"))
    assert len(shards) == 2 and all(p.read_text().strip() for p in shards)
    print(f"rehearsal wall time: {seconds:.0f} s, {len(ids)} SLURM jobs")
