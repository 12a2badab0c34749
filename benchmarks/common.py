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
    """The machine a figure came from: CPU model and the flags that decide its speed, GPU, cores."""
    from lorapress.hardware import detect

    facts = detect().describe()
    gpu = None
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or None
    except OSError:
        pass
    return {"cpu": facts["cpu_model"] or platform.machine(), "cpu_flags": facts["cpu_flags"],
            "avx512_bf16": facts["cpu_bf16_native"], "cores": os.cpu_count(), "gpu": gpu,
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


def wiki_questions(n: int) -> list[dict]:
    from lorapress.prepare import load_wiki

    _, questions = load_wiki(Path("data/wiki/sample.jsonl"))
    return questions[:n]


def engine_settings(dtype: str = "float32"):
    from lorapress.engine import EngineSettings

    return EngineSettings(model=MODEL, dtype=dtype, max_model_len=2048, seed=0, max_num_seqs=64,
                          trust_remote_code=False, chat_template_kwargs={})


def conversations(questions: list[dict]) -> list[list[dict]]:
    from lorapress.evaluate import question_messages

    return [question_messages(q, "Answer in a few words.") for q in questions]
