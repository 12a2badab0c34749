"""Stage `stats`: text-reduction rate (TRR) and retention of every compressed variant.

TRR = 100 × (1 − compressed length / original length), in %, measured in
characters, whitespace words and model tokens. Retention compares the
compressed text with its original: ROUGE recall (how much of the original
survives) and corpus BLEU.
"""

from __future__ import annotations

from pathlib import Path

from .io import atomic_path, read_jsonl
from .metrics import corpus_bleu, rouge


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
            "trr_chars": 100 * (1 - len(comp) / len(orig)),
            "trr_words": 100 * (1 - len(comp.split()) / len(orig.split())),
            "off_target": bool(c.get("off_target", False)),
            "rouge1_recall": r["rouge1"]["recall"],
            "rouge2_recall": r["rouge2"]["recall"],
            "rougeL_recall": r["rougeL"]["recall"],
        }
        if tokens is not None:
            row["trr_tokens"] = 100 * (1 - tokens[2 * k + 1] / tokens[2 * k])
        rows.append(row)
    return rows


def summarise(items, bleu_by_variant: dict):
    """One row per dataset and variant: TRR distribution, off-target share, retention."""

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
        rouge1_recall=("rouge1_recall", "mean"),
        rouge2_recall=("rouge2_recall", "mean"),
        rougeL_recall=("rougeL_recall", "mean"),
    ).reset_index()
    table["bleu"] = [bleu_by_variant[(d, v)] for d, v in zip(table["dataset"], table["variant"])]
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


def compute_stats(compressed_files: list[str], docs_files: list[str], out_csv: str, items_csv: str,
                  tokenizer_dir: str | None = None) -> None:
    """`compressed_files`: .../{dataset}/{variant}.jsonl; `docs_files`: .../{dataset}/docs.jsonl."""
    import pandas as pd

    count_tokens = None
    if tokenizer_dir:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        count_tokens = lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]  # noqa: E731
    rows, bleu_by_variant = [], {}
    docs_by_dataset = {Path(p).parent.name: read_jsonl(p) for p in docs_files}
    for path in map(Path, compressed_files):
        dataset, variant = path.parent.name, path.stem
        docs = docs_by_dataset[dataset]
        compressed = read_jsonl(path)
        rows += item_rows(dataset, variant, docs, compressed, count_tokens)
        originals = {d["item_id"]: d["text"] for d in docs}
        bleu_by_variant[(dataset, variant)] = corpus_bleu([c["text"] for c in compressed],
                                                          [originals[c["item_id"]] for c in compressed])
    items = pd.DataFrame(rows)
    table = summarise(items, bleu_by_variant)
    with atomic_path(items_csv) as tmp:
        items.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
