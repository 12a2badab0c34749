"""Evaluation cost of K adapters: one engine start serving all K (LoRARequest per request)
against K separate engine starts with one adapter each. Wall time includes the starts.

    python benchmarks/adapters_per_engine.py [--k 1 4 8] [--questions 24]
Needs the default run's adapters (results/adapters/wiki/*/r*).
"""

import argparse
import glob
import time

from common import MODEL, save, wiki_questions


def answer(adapters: list[str], conversations, max_tokens: int) -> float:
    from lorapress.engine import Engine, EngineSettings

    started = time.perf_counter()
    engine = Engine(EngineSettings(model=MODEL, dtype="bfloat16"), max_loras=len(adapters), max_lora_rank=16)
    engine.chat([c for _ in adapters for c in conversations], max_tokens=max_tokens,
                adapters=[a for a in adapters for _ in conversations])
    seconds = time.perf_counter() - started
    engine.close()
    return seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    adapters = sorted(glob.glob("results/adapters/wiki/*/r*_s0"))[:max(args.k)]
    if len(adapters) < max(args.k):
        raise SystemExit(f"need {max(args.k)} adapters under results/adapters/wiki, found {len(adapters)}")
    conversations = [[{"role": "user", "content": q}] for q in wiki_questions(args.questions)]
    # K separate starts = K independent single-adapter runs: time each adapter alone once.
    alone = [answer([a], conversations, args.max_tokens) for a in adapters]
    print("single-adapter runs (s):", [round(t, 1) for t in alone], flush=True)
    rows = []
    for k in args.k:
        one_engine = alone[0] if k == 1 else answer(adapters[:k], conversations, args.max_tokens)
        separate = sum(alone[:k])
        rows.append({"k": k, "one_engine_s": one_engine, "separate_starts_s": separate,
                     "speedup": separate / one_engine})
        print(rows[-1], flush=True)
    save("adapters_per_engine", {"command": f"python benchmarks/adapters_per_engine.py --k {' '.join(map(str, args.k))} "
                                 f"--questions {args.questions}", "questions_per_adapter": args.questions,
                                 "max_tokens": args.max_tokens, "runs": 1, "single_adapter_runs_s": alone, "rows": rows})


if __name__ == "__main__":
    main()
