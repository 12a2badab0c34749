"""The sbatch/srun arguments that the pinned SLURM plugin builds for the GPU rules of profiles/slurm.

No SLURM needed: a throwaway Snakefile with rules named like the pipeline's GPU rules runs through
`--profile <copy of profiles/slurm>` with fake sbatch/srun/sacct/sinfo/scontrol first on PATH. The
fake sbatch records its arguments and runs the --wrap payload at once (the slurm-jobstep snakemake,
which calls the fake srun, which records its arguments and runs the rule), so the run ends normally.

Plugin 2.6.1 adds --ntasks-per-gpu=1 to every GPU job unless tasks_per_gpu is 0; next to
--cpus-per-task that makes srun fail (plugin issues #342, #373) and it can start a job once per GPU
(#316, #459). A fourth rule with train's sizing but tasks_per_gpu: 1 shows the check can fail.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

GPU_RULES = ("compress", "train", "evaluate")
UNFIXED = "train_tasks_per_gpu_1"  # train's profile entry with tasks_per_gpu: 1 (the plugin's default)

FAKES = {
    # record argv (one per line), run the --wrap payload in the -D dir like a one-node cluster, print the id
    "sbatch": r"""#!/usr/bin/env bash
id=$$; wrap=; wd=$PWD; gpus=; prev=
: > "$FAKE_SLURM/sbatch.$id.argv"
for a in "$@"; do
  printf '%s\n' "$a" >> "$FAKE_SLURM/sbatch.$id.argv"
  case "$a" in --wrap=*) wrap=${a#--wrap=};; --gpus=*) gpus=${a#--gpus=};; esac
  [ "$prev" = -D ] && wd=$a
  prev=$a
done
(cd "$wd" || exit 1; export SLURM_JOB_ID=$id; [ -z "$gpus" ] || export SLURM_GPUS=$gpus
 exec bash -c "$wrap") > "$FAKE_SLURM/job.$id.out" 2>&1
echo $? > "$FAKE_SLURM/job.$id.rc"
echo "$id"
""",
    # record argv, drop the options (all of the --opt=value or -n1 form), run the command
    "srun": r"""#!/usr/bin/env bash
printf '%s\n' "$@" > "$FAKE_SLURM/srun.${SLURM_JOB_ID:-none}.argv"
while [ $# -gt 0 ]; do case "$1" in -*) shift;; *) break;; esac; done
exec "$@"
""",
    # job states for the status query (`sacct ... --name <run id>`); nothing for the account guess
    "sacct": r"""#!/usr/bin/env bash
case "$*" in *--name*) ;; *) exit 0;; esac
for f in "$FAKE_SLURM"/job.*.rc; do
  [ -e "$f" ] || continue
  id=${f##*/job.}; id=${id%.rc}
  if [ "$(cat "$f")" = 0 ]; then echo "$id|COMPLETED"; else echo "$id|FAILED"; fi
done
""",
    "sinfo": "#!/usr/bin/env bash\necho PARTITION\necho 'gpu*'\n",
    "scontrol": "#!/usr/bin/env bash\necho 'MaxArraySize = 1001'\necho 'MinJobAge = 300 sec'\n",
    "squeue": "#!/usr/bin/env bash\nexit 0\n",
    "sacctmgr": "#!/usr/bin/env bash\nexit 0\n",
    "sshare": "#!/usr/bin/env bash\nexit 0\n",
    "scancel": "#!/usr/bin/env bash\nexit 0\n",
}


def _value(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


@pytest.fixture(scope="module")
def submitted(tmp_path_factory):
    """{rule: (sbatch argv, srun argv)} from one fake-SLURM run of the real profile."""
    tmp = tmp_path_factory.mktemp("slurm_gpu")
    bin_dir, record = tmp / "bin", tmp / "record"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in FAKES.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)

    profile = tmp / "profile"
    shutil.copytree(REPO / "profiles/slurm", profile)
    config = yaml.safe_load((profile / "config.yaml").read_text())
    # the fourth rule: train's real entry with tasks_per_gpu: 1 (a command-line --set-resources would
    # replace the profile's whole set-resources section, so the copy of the profile gets it)
    config["set-resources"][UNFIXED] = {**config["set-resources"]["train"], "tasks_per_gpu": 1}
    config["set-threads"][UNFIXED] = config["set-threads"]["train"]
    (profile / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    work = tmp / "wf"
    work.mkdir()
    rules = "".join(f'rule {rule}:\n    output: "{rule}.done"\n    shell: "touch {{output}}"\n\n'
                    for rule in (*GPU_RULES, UNFIXED))
    (work / "Snakefile").write_text(
        f"localrules: all\n\nrule all:\n    input: {[f'{rule}.done' for rule in (*GPU_RULES, UNFIXED)]}\n\n{rules}")

    env = {**os.environ,
           "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "FAKE_SLURM": str(record)}
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
        del env[var]
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(profile),
           # speed only; the GPU resources come from the profile untouched
           "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "2"]
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:  # e.g. a status query that never sees the job finish
        os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the fake jobs it started
        _, stderr = proc.communicate()
        pytest.fail(f"snakemake hung:\n{stderr[-4000:]}")
    logs = "\n".join(f"== {f.name}\n{f.read_text()[-1500:]}" for f in sorted(record.glob("job.*.out")))
    assert proc.returncode == 0, stderr[-5000:] + "\n" + logs
    assert all((work / f"{rule}.done").exists() for rule in (*GPU_RULES, UNFIXED))

    jobs = {}
    for path in record.glob("sbatch.*.argv"):
        job_id = path.name.split(".")[1]
        sbatch = path.read_text().splitlines()
        srun_path = record / f"srun.{job_id}.argv"
        srun = srun_path.read_text().splitlines() if srun_path.exists() else []
        jobs[_value(sbatch, "--comment")] = (sbatch, srun)
    assert sorted(jobs) == sorted(f"rule_{rule}" for rule in (*GPU_RULES, UNFIXED)), jobs
    return {comment.removeprefix("rule_"): argvs for comment, argvs in jobs.items()}


def _srun_options(argv):
    """The options before the command that srun runs (the jobstep writes them all as -n1 or --opt=value)."""
    options = []
    for arg in argv:
        if not arg.startswith("-"):
            break
        options.append(arg)
    return options


def _sbatch_options(argv):
    """sbatch's arguments (with --wrap sbatch takes no script) without the --wrap payload."""
    return [arg for arg in argv if not arg.startswith("--wrap=")]


@pytest.mark.parametrize("rule", GPU_RULES)
def test_gpu_rule_sbatch_has_no_ntasks_per_gpu(submitted, rule):
    sbatch, srun = submitted[rule]
    options, step = _sbatch_options(sbatch), _srun_options(srun)
    assert "--gpus=1" in options and "--cpus-per-task=8" in options, " ".join(options)
    assert not [a for a in options if a.startswith("--ntasks-per-gpu")], " ".join(options)
    assert _value(sbatch, "-p") == "gpu"
    assert step[:1] == ["-n1"] and "--cpus-per-task=8" in step and "--gpus=1" in step, " ".join(srun)
    assert not [a for a in step if a.startswith("--ntasks-per-gpu")], " ".join(step)


def test_without_tasks_per_gpu_0_the_plugin_adds_ntasks_per_gpu(submitted):
    options = _sbatch_options(submitted[UNFIXED][0])
    assert "--ntasks-per-gpu=1" in options, " ".join(options)
    assert "--gpus=1" in options and "--cpus-per-task=8" in options, " ".join(options)
