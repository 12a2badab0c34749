"""vLLM's LoRA path against transformers + peft on this machine: the same adapters, the same questions,
greedy. Times answering (after the engine/model is up) and the start separately, and how many answers
agree word for word (the agreement the evaluate stage's self-check requires).

    python benchmarks/backends.py [--adapters 4] [--questions 24] [--max-tokens 16]
Needs trained adapters (the default run's results/adapters/wiki/*/r*).
"""

import argparse
import glob
import time

from common import conversations, engine_settings, save, wiki_questions


def run(backend: str, adapters: list[str], chats, max_tokens: int, dtype: str) -> dict:
    from lorapress.engine import open_engine
    from lorapress.evaluate import lora_rank_limit
    from lorapress.io import read_json

    configs = [read_json(f"{a}/adapter_config.json") for a in adapters]
    started = time.perf_counter()
    engine = open_engine(backend, engine_settings(dtype), max_loras=len(adapters),
                         max_lora_rank=lora_rank_limit([c["r"] for c in configs]),
                         lora_target_modules=sorted({m for c in configs for m in c["target_modules"]}))
    ready = time.perf_counter()
    requests = [(a, c) for a in [None, *adapters] for c in chats]
    answers = engine.generate([c for _, c in requests], max_tokens=max_tokens, adapters=[a for a, _ in requests])
    done = time.perf_counter()
    engine.close()
    return {"start_s": ready - started, "answer_s": done - ready, "requests": len(requests),
            "s_per_answer": (done - ready) / len(requests), "answers": [a.text for a in answers]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    adapters = sorted(glob.glob("results/adapters/wiki/*/r*_s0"))[:args.adapters]
    chats = conversations(wiki_questions(args.questions))
    results = {b: run(b, adapters, chats, args.max_tokens, args.dtype) for b in ("transformers", "vllm")}
    pairs = list(zip(results["transformers"].pop("answers"), results["vllm"].pop("answers")))
    agree = sum(a == b for a, b in pairs)
    print(results, f"agreement {agree}/{len(pairs)}", flush=True)
    save("backends", {
        "command": f"python benchmarks/backends.py --adapters {args.adapters} --questions {args.questions} "
                   f"--max-tokens {args.max_tokens} --dtype {args.dtype}",
        "adapters": len(adapters), "questions": args.questions, "max_tokens": args.max_tokens, "dtype": args.dtype,
        "backends": results, "agreement": agree, "compared": len(pairs),
        "vllm_over_transformers_answer_time": results["vllm"]["answer_s"] / results["transformers"]["answer_s"]})


if __name__ == "__main__":
    main()
