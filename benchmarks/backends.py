"""vLLM against transformers (+ peft) on this machine, on the work lorapress gives them.

1. Answers through adapters: the same adapters and questions, greedy; answering time (after the engine
   or model is up) and start time apart, and how many answers agree word for word (the agreement the
   evaluate stage's self-check requires).
2. Summaries: one compression level's prompts for the wiki sample, greedy with the level's repetition
   penalty; the time of each and how many summaries agree word for word.

    python benchmarks/backends.py [--adapters 4] [--questions 24] [--max-tokens 16] [--summaries 12]
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


def summaries(backend: str, texts: list[str], dtype: str) -> dict:
    from lorapress.compress import Level, max_new_tokens
    from lorapress.engine import open_engine

    level = Level(prompt="{text}\n\nSummarize the text above in at most {target_words} words. Keep only the most "
                  "important facts.", target_trr=65, tolerance=15, retry_prompt="")
    started = time.perf_counter()
    engine = open_engine(backend, engine_settings(dtype))
    ready = time.perf_counter()
    caps = [max_new_tokens(n, level.target_trr, 1.3) for n in engine.count_tokens(texts)]
    replies = engine.generate([[{"role": "user", "content": level.render(t)}] for t in texts], max_tokens=caps,
                              repetition_penalty=1.15)
    done = time.perf_counter()
    engine.close()
    return {"start_s": ready - started, "generate_s": done - ready, "summaries": [r.text for r in replies],
            "new_tokens": sum(r.n_tokens for r in replies)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--summaries", type=int, default=12)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    from lorapress.prepare import load_wiki
    from pathlib import Path

    texts = [d["text"] for d in load_wiki(Path("data/wiki/sample.jsonl"))[0][:args.summaries]]
    summary = {b: summaries(b, texts, args.dtype) for b in ("transformers", "vllm")}
    same = sum(a == b for a, b in zip(summary["transformers"].pop("summaries"), summary["vllm"].pop("summaries")))
    print(summary, f"summaries identical {same}/{len(texts)}", flush=True)
    adapters = sorted(glob.glob("results/adapters/wiki/*/r*_s0"))[:args.adapters]
    chats = conversations(wiki_questions(args.questions))
    results = {b: run(b, adapters, chats, args.max_tokens, args.dtype) for b in ("transformers", "vllm")}
    pairs = list(zip(results["transformers"].pop("answers"), results["vllm"].pop("answers")))
    agree = sum(a == b for a, b in pairs)
    print(results, f"agreement {agree}/{len(pairs)}", flush=True)
    save("backends", {
        "command": f"python benchmarks/backends.py --adapters {args.adapters} --questions {args.questions} "
                   f"--max-tokens {args.max_tokens} --summaries {args.summaries} --dtype {args.dtype}",
        "adapters": len(adapters), "questions": args.questions, "max_tokens": args.max_tokens, "dtype": args.dtype,
        "backends": results, "agreement": agree, "compared": len(pairs),
        "summaries": {"count": len(texts), "identical": same, **summary},
        "vllm_over_transformers_answer_time": results["vllm"]["answer_s"] / results["transformers"]["answer_s"]})


if __name__ == "__main__":
    main()
