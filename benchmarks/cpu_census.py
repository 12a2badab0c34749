"""Where a run's CPU time goes, process by process: how `make test`'s figures in BENCHMARKS.md were taken.

    python benchmarks/cpu_census.py record census.json & census=$!
    make test
    kill $census; wait $census
    python benchmarks/cpu_census.py report census.json

`record` samples every process once a second (psutil) and keeps, per process, its command line and the CPU
time (user + system) it used while recorded; a process alive before the recording starts counts only what it
used after. Processes that live less than a second between two samples are missed (a few % of a test run).
`report` groups them by what started them: the cluster rehearsal's jobs (under slurmstepd), its own Snakemake,
the study of every kind (a Snakemake on study.yaml), `vllm serve`, and pytest with its other children.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import signal
import sys
import time

import psutil


def record(out: str, interval: float = 1.0) -> None:
    seen: dict[str, dict] = {}
    first: dict[str, float] = {}  # CPU a process had used when first seen, if it was alive before the recording
    started, me = time.time(), psutil.Process().pid

    def dump(*_):
        json.dump(list(seen.values()), open(out, "w"))
        sys.exit(0)

    signal.signal(signal.SIGTERM, dump)
    signal.signal(signal.SIGINT, dump)
    while True:
        for proc in psutil.process_iter(["pid", "ppid", "name", "cmdline", "cpu_times", "create_time"]):
            info = proc.info
            if info["pid"] == me or info["cpu_times"] is None:
                continue
            key = f"{info['pid']}@{info['create_time']}"
            cpu = info["cpu_times"].user + info["cpu_times"].system
            if key not in first:
                first[key] = cpu if info["create_time"] < started else 0.0
            seen[key] = {"pid": info["pid"], "ppid": info["ppid"], "name": info["name"], "start": info["create_time"],
                         "cmd": " ".join(info["cmdline"] or [])[:400] or seen.get(key, {}).get("cmd", ""),
                         "cpu": cpu - first[key]}
        time.sleep(interval)


def group(proc: dict, chain: list[dict]) -> str:
    """What started a process, from its own command line and its ancestors'."""
    names, commands = [p["name"] for p in chain], [p["cmd"] for p in chain]
    if proc["name"] in ("slurmctld", "slurmd", "slurmdbd", "mariadbd", "mysqld", "munged"):
        return "SLURM's daemons"
    if "slurmstepd" in names or any("slurm-jobstep" in c for c in commands):
        return "rehearsal: its jobs"
    if any("profiles/slurm" in c and "rehearsal.yaml" in c for c in commands):
        return "rehearsal: its Snakemake (and local rules)"
    if any("study.yaml" in c or "e2e-kinds" in c or "e2e-model" in c for c in commands):
        return "study of every kind"
    if any("api_server" in c for c in commands):
        return "vllm serve"
    if any("pytest" in c for c in commands):
        return "pytest and its other children"
    return "other"


def report(path: str, top: int = 25) -> None:
    procs = json.load(open(path))
    by_pid = collections.defaultdict(list)
    for p in procs:
        by_pid[p["pid"]].append(p)

    def parent(p):
        candidates = [q for q in by_pid.get(p["ppid"], []) if q["start"] <= p["start"] + 0.5]
        return max(candidates, key=lambda q: q["start"]) if candidates else None

    groups, stages = collections.Counter(), collections.Counter()
    for p in procs:
        chain, q = [], p
        while q is not None and len(chain) < 40:
            chain.append(q)
            q = parent(q)
        where = group(p, chain)
        stage = re.search(r"lorapress (\w+)|-m snakemake|gpu_smoke|chromium|api_server", p["cmd"])
        groups[where] += p["cpu"]
        stages[where, stage.group(0) if stage else p["name"]] += p["cpu"]
    print(f"CPU seconds recorded: {sum(groups.values()):.0f}")
    for where, cpu in groups.most_common():
        print(f"  {where:45s} {cpu:8.1f}")
    print("\nlargest parts (group, command):")
    for (where, what), cpu in stages.most_common(top):
        print(f"  {where:45s} {what:28s} {cpu:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("record").add_argument("out")
    sub.add_parser("report").add_argument("census")
    args = parser.parse_args()
    record(args.out) if args.command == "record" else report(args.census)


if __name__ == "__main__":
    main()
