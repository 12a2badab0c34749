"""Generation throughput: vLLM against transformers' batched `generate`, same model, prompts, greedy.

    python benchmarks/generation.py [--prompts 64] [--max-tokens 32] [--runs 3]
"""

import argparse

from common import MODEL, save, timed, wiki_questions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    conversations = [[{"role": "user", "content": q}] for q in wiki_questions(args.prompts)]

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=getattr(torch, args.dtype))
    prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)

    def hf():
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=args.max_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        return int((new != tok.eos_token_id).sum())

    hf_median, hf_times, hf_tokens = timed(hf, args.runs)

    from lorapress.engine import Engine, EngineSettings

    engine = Engine(EngineSettings(model=MODEL, dtype=args.dtype))

    def vllm():
        outs = engine.llm.chat(conversations, engine.sampling(args.max_tokens), use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs)

    vllm_median, vllm_times, vllm_tokens = timed(vllm, args.runs)
    save("generation", {
        "command": "python benchmarks/generation.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "prompts": args.prompts, "max_tokens": args.max_tokens, "runs": args.runs, "dtype": args.dtype,
        "transformers": {"median_s": hf_median, "times_s": hf_times, "new_tokens": hf_tokens,
                         "tokens_per_s": hf_tokens / hf_median},
        "vllm": {"median_s": vllm_median, "times_s": vllm_times, "new_tokens": vllm_tokens,
                 "tokens_per_s": vllm_tokens / vllm_median},
    })


if __name__ == "__main__":
    main()
