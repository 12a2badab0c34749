"""Peak memory and time of `lorapress prepare` on a LongMemEval file the size of longmemeval_s_cleaned.json.

The official file cannot be downloaded here, so a synthetic one with the same shape is written:
500 questions, 48 sessions each (unique per question, as in _s), ~10 turns per session, ~277 MB.

    python benchmarks/longmemeval_memory.py [--questions 500] [--sessions 48] [--turn-chars 560]
"""

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from common import save

TYPES = ["single-session-user", "single-session-assistant", "single-session-preference", "multi-session",
         "knowledge-update", "temporal-reasoning"]


def write_file(path: Path, questions: int, sessions: int, turn_chars: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    words = "the a user assistant went bought city garden book coffee week plan train idea dog cat".split()
    start = datetime(2023, 1, 1, 9, 0)
    with open(path, "w") as fh:
        fh.write("[")
        for q in range(questions):
            ids = [f"s{q}_{k}" for k in range(sessions)]
            dates = [(start + timedelta(hours=7 * k + q)).strftime("%Y/%m/%d (%a) %H:%M") for k in range(sessions)]
            haystack = [[{"role": "user" if t % 2 == 0 else "assistant",
                          "content": " ".join(rng.choice(words) for _ in range(turn_chars // 5))}
                         for t in range(10)] for _ in range(sessions)]
            record = {"question_id": f"q{q}" + ("_abs" if q % 17 == 0 else ""), "question_type": TYPES[q % 6],
                      "question": "What did I buy?", "answer": "a book",
                      "question_date": (start + timedelta(days=400)).strftime("%Y/%m/%d (%a) %H:%M"),
                      "haystack_session_ids": ids, "haystack_dates": dates, "haystack_sessions": haystack,
                      "answer_session_ids": ids[:2]}
            fh.write(("," if q else "") + json.dumps(record))
        fh.write("]")
    return path.stat().st_size


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=48)
    parser.add_argument("--turn-chars", type=int, default=560)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "longmemeval_s_like.json"
        size = write_file(data, args.questions, args.sessions, args.turn_chars)
        out = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "lorapress", "prepare", "--format",
                              "longmemeval", "--input", str(data), "--docs", f"{tmp}/docs.jsonl", "--qa",
                              f"{tmp}/qa.jsonl"], capture_output=True, text=True, check=True)
        peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
        wall = re.search(r"Elapsed \(wall clock\) time .*: (.+)", out.stderr).group(1)
    save("longmemeval_memory", {"command": "python benchmarks/longmemeval_memory.py", "file_mb": size / 1e6,
                                "questions": args.questions, "sessions_per_question": args.sessions,
                                "peak_rss_mb": peak_kb / 1024, "wall": wall})


if __name__ == "__main__":
    main()
