"""Training throughput (trained tokens/s): packed against padded rows, on the texts where it matters.

    python benchmarks/training.py [--sessions 8] [--epochs 1] [--max-length 1024] [--threads 1]
Trains on synthetic LongMemEval-shaped chat sessions of widely varying length (hundreds to a few
thousand tokens, as in longmemeval_s), where padded batches waste most compute, and on the wiki
sample's ~200-token articles, where they waste little. Same model, rank, batch and schedule; only
`train.packing` differs.
"""

import argparse
import json
import random
import tempfile
from pathlib import Path

from common import MODEL, save

TURNS = ["I have been planning a trip to the coast with my sister for months now.",
         "That sounds lovely! Have you decided where you will stay?",
         "We booked a small guesthouse near the harbour for the first week of June.",
         "Great choice. The harbour area has good restaurants and early morning markets.",
         "My sister is vegetarian, so we need places with good vegetable dishes.",
         "Many harbour restaurants offer grilled vegetables and fresh salads; ask for the daily specials."]


def synthetic_sessions(n: int, seed: int = 0) -> list[dict]:
    """Chat sessions of 4 to 80 turns (~60 to ~1,600 words): the spread of real LongMemEval sessions."""
    rng = random.Random(seed)
    sessions = []
    for k in range(n):
        turns = [f"{'user' if t % 2 == 0 else 'assistant'}: {rng.choice(TURNS)}" for t in range(rng.randint(4, 80))]
        sessions.append({"item_id": f"s{k}", "title": f"Chat session s{k} on 2023/05/{k + 1:02d} (Mon) 10:00",
                         "text": "\n".join(turns)})
    return sessions


def settings(packing: bool, args):
    from lorapress.train import TrainSettings

    return TrainSettings(method="lora", compute_dtype="float32", rank=16, alpha=16, scaling="fixed", reference_rank=16,
                         dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                       "down_proj"], lr=1e-3, epochs=args.epochs, batch_size=4,
                         grad_accum=1, max_length=args.max_length, warmup_ratio=0.1, weight_decay=0.0, packing=packing,
                         log_every=1000, seed=0, items=None, trust_remote_code=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wiki", default="results/compressed/wiki/original_text.jsonl")
    args = parser.parse_args()
    from lorapress.io import write_jsonl
    from lorapress.train import train

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        long = Path(tmp) / "sessions.jsonl"
        write_jsonl(long, synthetic_sessions(args.sessions))
        for name, path in (("long chat sessions", long), ("wiki articles", Path(args.wiki))):
            if not path.exists():
                continue
            for packing in (False, True):
                summary = train(MODEL, str(path), f"{tmp}/adapter-{packing}", settings(packing, args), threads=args.threads)
                rows.append({"texts": name, "packing": packing, "tokens_per_s": summary["tokens_per_second"],
                             "train_s": summary["train_seconds"], "tokens_seen": summary["tokens_seen"],
                             "optimizer_steps": summary["optimizer_steps"], "loss_last": summary["loss_last"]})
                print(json.dumps(rows[-1]), flush=True)
    for name in {r["texts"] for r in rows}:
        padded, packed = (next(r for r in rows if r["texts"] == name and r["packing"] == p) for p in (False, True))
        packed["speedup_over_padded"] = packed["tokens_per_s"] / padded["tokens_per_s"]
    save("training", {"command": f"python benchmarks/training.py --sessions {args.sessions} --epochs {args.epochs} "
                                 f"--max-length {args.max_length} --threads {args.threads}",
                      "rows": rows, "max_length": args.max_length, "batch_size": 4, "rank": 16, "method": "lora"})


if __name__ == "__main__":
    main()
