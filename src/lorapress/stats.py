"""Stage `stats`: text-reduction rate (TRR) and retention of every compressed variant.

TRR = 100 × (1 − compressed length / original length), in %, measured in characters,
whitespace words and model tokens. Two summaries of it, because they differ when item
lengths differ: the mean of per-item TRRs (every item counts alike) and the pooled TRR,
100 × (1 − total compressed / total original) (what the training set lost). Retention
compares the compressed text with its original: ROUGE recall (how much of the original
survives) and sacrebleu's n-gram precisions (how much of the compressed text is copied).
Corpus BLEU itself is not reported: its brevity penalty only restates the TRR.
"""

from __future__ import annotations

import argparse

from .io import atomic_path, read_jsonl
from .metrics import corpus_ngram_precisions, rouge


def item_rows(dataset: str, variant: str, docs: list[dict], compressed: list[dict], count_tokens=None) -> list[dict]:
    originals = {d["item_id"]: d["text"] for d in docs}
    rows = []
    pairs = [(originals[c["item_id"]], c["text"]) for c in compressed]
    tokens = count_tokens([t for pair in pairs for t in pair]) if count_tokens else None
    for k, (c, (orig, comp)) in enumerate(zip(compressed, pairs)):
        r = rouge(comp, orig)
        row = {
            "dataset": dataset,
            "variant": variant,
            "item_id": c["item_id"],
            "chars": len(orig), "compressed_chars": len(comp),
            "trr_chars": 100 * (1 - len(comp) / len(orig)),
            "trr_words": 100 * (1 - len(comp.split()) / len(orig.split())),
            "off_target": bool(c.get("off_target", False)),
            "over_compressed": c.get("miss") == "over_compressed",
            "rouge1_recall": r["rouge1"]["recall"],
            "rouge2_recall": r["rouge2"]["recall"],
            "rougeL_recall": r["rougeL"]["recall"],
        }
        if tokens is not None:
            row["tokens"], row["compressed_tokens"] = tokens[2 * k], tokens[2 * k + 1]
            row["trr_tokens"] = 100 * (1 - tokens[2 * k + 1] / tokens[2 * k])
        rows.append(row)
    return rows


def pooled_trr(original: "pd.Series", compressed: "pd.Series") -> float:  # noqa: F821
    """100 × (1 − Σ compressed / Σ original)."""
    return 100 * (1 - compressed.sum() / original.sum())


def summarise(items, precisions_by_variant: dict):
    """One row per dataset and variant: TRR (per-item mean and distribution, pooled), misses, retention."""
    grouped = items.groupby(["dataset", "variant"], sort=False)
    table = grouped.agg(
        n_items=("item_id", "count"),
        trr_mean=("trr_chars", "mean"),
        trr_median=("trr_chars", "median"),
        trr_p10=("trr_chars", lambda s: s.quantile(0.1)),
        trr_p90=("trr_chars", lambda s: s.quantile(0.9)),
        trr_words_mean=("trr_words", "mean"),
        **({"trr_tokens_mean": ("trr_tokens", "mean")} if "trr_tokens" in items else {}),
        off_target_share=("off_target", "mean"),
        over_compressed_share=("over_compressed", "mean"),
        rouge1_recall=("rouge1_recall", "mean"),
        rouge2_recall=("rouge2_recall", "mean"),
        rougeL_recall=("rougeL_recall", "mean"),
    ).reset_index()
    pooled = grouped.apply(lambda g: pooled_trr(g["chars"], g["compressed_chars"]), include_groups=False)
    table.insert(table.columns.get_loc("trr_median"), "trr_pooled", pooled.to_numpy())
    if "trr_tokens" in items:
        pooled_tokens = grouped.apply(lambda g: pooled_trr(g["tokens"], g["compressed_tokens"]), include_groups=False)
        table.insert(table.columns.get_loc("trr_tokens_mean") + 1, "trr_tokens_pooled", pooled_tokens.to_numpy())
    for n in range(4):
        table[f"precision_{n + 1}gram"] = [precisions_by_variant[(d, v)][n]
                                           for d, v in zip(table["dataset"], table["variant"])]
    return table


def level_order_holds(table) -> dict[str, bool]:
    """Per dataset: is mean TRR strictly rising from l1 to l5?"""
    from . import SUMMARY_LEVELS

    verdict = {}
    for dataset, part in table.groupby("dataset"):
        means = part.set_index("variant")["trr_mean"]
        levels = [v for v in SUMMARY_LEVELS if v in means]
        verdict[dataset] = all(means[a] < means[b] for a, b in zip(levels, levels[1:]))
    return verdict


def compute_stats(compressed: list[tuple[str, str, str]], docs: list[tuple[str, str]], out_csv: str, items_csv: str,
                  tokenizer_dir: str | None = None) -> None:
    """`compressed`: (dataset, variant, path) of every variant file; `docs`: (dataset, path) of the originals."""
    import pandas as pd

    count_tokens = None
    if tokenizer_dir:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        count_tokens = lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]  # noqa: E731
    rows, precisions = [], {}
    docs_by_dataset = {dataset: read_jsonl(path) for dataset, path in docs}
    for dataset, variant, path in compressed:
        items = read_jsonl(path)
        rows += item_rows(dataset, variant, docs_by_dataset[dataset], items, count_tokens)
        originals = {d["item_id"]: d["text"] for d in docs_by_dataset[dataset]}
        precisions[(dataset, variant)] = corpus_ngram_precisions([c["text"] for c in items],
                                                                 [originals[c["item_id"]] for c in items])
    items = pd.DataFrame(rows)
    table = summarise(items, precisions)
    with atomic_path(items_csv) as tmp:
        items.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")


# ---------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress stats")
    parser.description = "TRR and retention of every compressed variant"
    parser.add_argument("--compressed", nargs=3, action="append", required=True, metavar=("DATASET", "VARIANT", "FILE"),
                        help="a variant file (repeat per dataset and variant)")
    parser.add_argument("--docs", nargs=2, action="append", required=True, metavar=("DATASET", "FILE"),
                        help="a dataset's original items, docs.jsonl (repeat per dataset)")
    parser.add_argument("--out", required=True, help="summary CSV (trr.csv)")
    parser.add_argument("--items-out", required=True, help="per-item CSV")
    parser.add_argument("--tokenizer", help="model directory whose tokenizer counts tokens")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    compute_stats([tuple(c) for c in args.compressed], [tuple(d) for d in args.docs], args.out, args.items_out,
                  args.tokenizer)
