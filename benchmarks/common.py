"""Shared bits of the benchmarks: timing, machine facts, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODEL = "resources/models/smollm2-135m-instruct"


def machine() -> dict:
    gpu = None
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or None
    except OSError:
        pass
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": gpu,
            "python": platform.python_version()}


def timed(fn, runs: int) -> tuple[float, list[float], object]:
    """Median wall seconds of `runs` calls, all the times, and the last result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, result


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path


def wiki_questions(n: int) -> list[str]:
    from lorapress.prepare import load_wiki

    _, questions = load_wiki(Path("data/wiki/sample.jsonl"))
    return [q["question"] for q in questions[:n]]
