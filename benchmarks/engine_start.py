"""A vLLM engine on a CPU: started in vLLM's own processes (the default) or in the caller's (`in_process`).

The evaluate stage's self-check opens a vLLM engine for a handful of answers; on a CPU it runs it in the
job's own process. Each mode runs in a fresh Python (so both pay the same imports), opens the engine with one
adapter slot, answers two questions (one through a trained adapter), closes it; the wall time and the CPU time
of that Python and every process it started are measured, and the answers compared.

    python benchmarks/engine_start.py [--adapter results/adapters/wiki/original_text/r16_nall_s0]
Needs the converted embedded model (make run) and one trained adapter.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from common import engine_settings, save

QUESTIONS = [[{"role": "user", "content": "Who built the Varnholt Bridge?"}],
             [{"role": "user", "content": "What is 2+2?"}]]


def answer(adapter: str, in_process: bool) -> list[str]:
    from lorapress.engine import open_engine
    from lorapress.io import read_json

    config = read_json(f"{adapter}/adapter_config.json")
    engine = open_engine("vllm", engine_settings("float32"), max_loras=1, max_lora_rank=config["r"],
                         lora_target_modules=sorted(config["target_modules"]), in_process=in_process)
    answers = engine.generate(QUESTIONS, max_tokens=12, adapters=[adapter, None])
    engine.close()
    return [a.text for a in answers]


def measure(adapter: str, in_process: bool) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--adapter", adapter, "--child", str(int(in_process))],
                         capture_output=True, text=True, check=True, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "answers": json.loads(out.stdout.splitlines()[-1])}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapter", default="results/adapters/wiki/original_text/r16_nall_s0")
    parser.add_argument("--child", choices=["0", "1"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(answer(args.adapter, args.child == "1")))
        return
    results = {mode: measure(args.adapter, mode == "in_process") for mode in ("processes", "in_process")}
    same = results["processes"]["answers"] == results["in_process"]["answers"]
    print(results, f"same answers: {same}", flush=True)
    save("engine_start", {"command": f"python benchmarks/engine_start.py --adapter {args.adapter}",
                          "adapter": args.adapter, "modes": results, "same_answers": same})


if __name__ == "__main__":
    main()
