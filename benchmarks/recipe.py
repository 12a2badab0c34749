"""Choosing the embedded default's training recipe: does the adapter's gain show on the metrics that can
see it (answer log-likelihood and the knowledge-specific margin against three same-kind distractors),
with an interval that excludes zero, at what training cost?

    python benchmarks/recipe.py [--recipes 2:1e-3:all 1:2e-3:all 2:1e-3:attention]
Each recipe is EPOCHS:LR:MODULES (all = q,k,v,o,gate,up,down; attention = q,k,v,o); LoRA r16, alpha 16,
batch 4, warm-up ratio 0.1, one thread, trained on the wiki sample's original text and scored on its
72 questions against the untuned model (95% intervals: bootstrap over questions, one seed). Needs the
default run's results/compressed/wiki/original_text.jsonl and results/data/wiki/qa.jsonl.
"""

import argparse
import tempfile

import numpy as np

from common import MODEL, engine_settings, save

MODULES = {"all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "attention": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def scores(adapter, questions):
    """(answer log-likelihood, margin) per question, through transformers + peft."""
    from lorapress.engine import TransformersEngine
    from lorapress.evaluate import question_messages
    from lorapress.metrics import distractor_scores

    engine = TransformersEngine(engine_settings())
    chats = [question_messages(q, "Answer in a few words.") for q in questions]
    flat = [(i, r) for i, q in enumerate(questions) for r in [q["answer"], *q["distractors"]]]
    logprobs = engine.loglik([chats[i] for i, _ in flat], [r for _, r in flat], adapters=[adapter] * len(flat))
    per = [[] for _ in questions]
    for (i, _), lp in zip(flat, logprobs):
        per[i].append(lp)
    out = [distractor_scores(p) for p in per]
    return (np.array([o["answer_loglik"] for o in out]),
            np.array([o["answer_loglik"] - o["distractor_loglik"] for o in out]))


def interval(x, resamples=4000):
    rng = np.random.default_rng(0)
    means = x[rng.integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    return [float(v) for v in np.percentile(means, [2.5, 97.5])]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipes", nargs="+", default=["2:1e-3:all", "1:2e-3:all", "1:3e-3:all", "2:1e-3:attention"])
    args = parser.parse_args()
    from lorapress.io import read_jsonl
    from lorapress.train import TrainSettings, train

    questions = read_jsonl("results/data/wiki/qa.jsonl")
    base_ll, base_margin = scores(None, questions)
    rows = []
    for recipe in args.recipes:
        epochs, lr, modules = recipe.split(":")
        settings = TrainSettings(method="lora", compute_dtype="float32", rank=16, alpha=16, scaling="fixed",
                                 reference_rank=16, dropout=0.05, target_modules=MODULES[modules], lr=float(lr),
                                 epochs=int(epochs), batch_size=4, grad_accum=1, max_length=512, warmup_ratio=0.1,
                                 weight_decay=0.0, packing=False, log_every=1000, seed=0, items=None,
                                 trust_remote_code=False)
        with tempfile.TemporaryDirectory() as tmp:
            summary = train(MODEL, "results/compressed/wiki/original_text.jsonl", f"{tmp}/adapter", settings)
            ll, margin = scores(f"{tmp}/adapter", questions)
        rows.append({"recipe": recipe, "train_s": summary["train_seconds"], "tokens_per_s": summary["tokens_per_second"],
                     "loglik_gain": float((ll - base_ll).mean()), "loglik_gain_ci": interval(ll - base_ll),
                     "margin_gain": float((margin - base_margin).mean()), "margin_gain_ci": interval(margin - base_margin)})
        print(rows[-1], flush=True)
    save("recipe", {"command": "python benchmarks/recipe.py --recipes " + " ".join(args.recipes), "rows": rows,
                    "questions": len(questions)})


if __name__ == "__main__":
    main()
