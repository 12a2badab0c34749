"""Evaluation cost of K adapters through vLLM: one engine start serving all K (a LoRARequest per request)
against K separate engine starts with one adapter each. Wall time includes the starts.

    python benchmarks/adapters_per_engine.py [--k 1 8] [--questions 16] [--max-tokens 16]
Needs K trained adapters (the default run's results/adapters/wiki/*/r*).
"""

import argparse
import glob
import time

from common import conversations, engine_settings, save, wiki_questions


def answer(adapters: list[str], chats, max_tokens: int, dtype: str) -> tuple[float, float]:
    """(wall seconds including the engine start, of which answering)."""
    from lorapress.engine import VllmEngine
    from lorapress.evaluate import lora_rank_limit
    from lorapress.io import read_json

    started = time.perf_counter()
    modules = sorted({m for a in adapters for m in read_json(f"{a}/adapter_config.json")["target_modules"]})
    engine = VllmEngine(engine_settings(dtype), max_loras=len(adapters),
                        max_lora_rank=lora_rank_limit([read_json(f"{a}/adapter_config.json")["r"] for a in adapters]),
                        lora_target_modules=modules)
    answering = time.perf_counter()
    engine.generate([c for _ in adapters for c in chats], max_tokens=max_tokens,
                    adapters=[a for a in adapters for _ in chats])
    done = time.perf_counter()
    engine.close()
    return done - started, done - answering


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    adapters = sorted(glob.glob("results/adapters/wiki/*/r*_s0"))[:max(args.k)]
    if len(adapters) < max(args.k):
        raise SystemExit(f"need {max(args.k)} adapters under results/adapters/wiki, found {len(adapters)}")
    chats = conversations(wiki_questions(args.questions))
    # K separate starts = K independent single-adapter runs: time each adapter alone once.
    alone = [answer([a], chats, args.max_tokens, args.dtype) for a in adapters]
    print("single-adapter runs (wall s, answering s):", [(round(w, 1), round(a, 1)) for w, a in alone], flush=True)
    rows = []
    for k in args.k:
        wall, answering = alone[0] if k == 1 else answer(adapters[:k], chats, args.max_tokens, args.dtype)
        separate = sum(w for w, _ in alone[:k])
        rows.append({"k": k, "one_engine_s": wall, "one_engine_answering_s": answering, "separate_starts_s": separate,
                     "speedup": separate / wall, "seconds_per_adapter_answer": answering / (k * len(chats))})
        print(rows[-1], flush=True)
    save("adapters_per_engine", {
        "command": f"python benchmarks/adapters_per_engine.py --k {' '.join(map(str, args.k))} "
                   f"--questions {args.questions} --max-tokens {args.max_tokens} --dtype {args.dtype}",
        "questions_per_adapter": args.questions, "max_tokens": args.max_tokens, "dtype": args.dtype, "runs": 1,
        "single_adapter_runs_s": [w for w, _ in alone], "rows": rows})


if __name__ == "__main__":
    main()
