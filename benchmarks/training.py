"""Training throughput (tokens/s): QLoRA against LoRA, packed against padded batches.

    python benchmarks/training.py [--epochs 1] [--runs 1]
Trains on the wiki sample's original text (the default run's results/compressed/wiki/original_text.jsonl).
"""

import argparse
import statistics
import tempfile

from common import MODEL, save


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text", default="results/compressed/wiki/original_text.jsonl")
    args = parser.parse_args()
    from lorapress.train import TrainSettings, train

    rows = []
    for method in ("qlora", "lora"):
        for packing in (False, True):
            rates, seconds = [], []
            for run in range(args.runs):
                settings = TrainSettings(method=method, packing=packing, epochs=args.epochs, rank=16, max_length=256,
                                         batch_size=4, seed=run)
                with tempfile.TemporaryDirectory() as out:
                    summary = train(MODEL, args.text, f"{out}/adapter", settings, threads=args.threads)
                rates.append(summary["tokens_per_second"])
                seconds.append(summary["train_seconds"])
            rows.append({"method": method, "packing": packing, "tokens_per_s_median": statistics.median(rates),
                         "train_s_median": statistics.median(seconds), "runs": args.runs})
            print(rows[-1], flush=True)
    save("training", {"command": f"python benchmarks/training.py --epochs {args.epochs} --runs {args.runs} "
                      f"--threads {args.threads}", "rows": rows, "max_length": 256, "batch_size": 4, "rank": 16})


if __name__ == "__main__":
    main()
