"""Stage `compress`: write one compressed variant of a dataset's knowledge items.

- `original_text`: the items unchanged (the reference condition);
- `summ_l1_slight` ... `summ_l5_extreme`: generative summaries by the base model
  (greedy, through vLLM by default, on CPUs too: `compression.backend`),
  each level with its own prompt and target TRR. Length is
  controlled, not hoped for: the prompt states a word budget, `max_tokens` caps
  the reply from the source length and the target, and a reply outside its
  band (empty, a near-copy, too long or over-compressed) is retried once with a
  stricter prompt, then kept and flagged `off_target` with its reason. Inputs
  longer than the model's context are summarised chunk by chunk and the
  summaries joined. Only the text is compressed: an item's title (a chat
  session's dated header) is kept in every variant;
- `ext`: extractive selection: TF-IDF sentence vectors scored by centrality
  (summed cosine similarity, as in LexRank), best sentences kept in their
  original order until the target TRR is reached.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
from dataclasses import dataclass

from . import EXTRACTIVE, ORIGINAL
from .engine import add_runtime_arguments, apply_runtime
from .io import StageError, parse_json_arg, provenance, read_json, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

_SPEAKER = re.compile(r"^(user|assistant): ", re.IGNORECASE)


def words(text: str) -> int:
    return len(text.split())


def trr(original: str, compressed: str) -> float:
    """Text reduction rate in %: 100 × (1 − compressed length / original length), by characters."""
    return 100.0 * (1.0 - len(compressed) / len(original)) if original else 0.0


# ---------------------------------------------------------------- extractive
def split_sentences(text: str) -> list[tuple[int, str, str]]:
    """Sentences as (line number, speaker prefix, sentence); lines keep chat turns apart."""
    import pysbd

    segmenter = pysbd.Segmenter(language="en", clean=False)
    units = []
    for line_no, line in enumerate(text.splitlines()):
        prefix_match = _SPEAKER.match(line)
        prefix = prefix_match.group(0) if prefix_match else ""
        body = line[len(prefix):].strip()
        for sentence in segmenter.segment(body) if body else []:
            if sentence.strip():
                units.append((line_no, prefix, sentence.strip()))
    return units


def extract(text: str, target_trr: float) -> str:
    """Keep the most central sentences, in original order, until the length budget is used."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    units = split_sentences(text)
    if len(units) <= 1:
        return text
    try:
        vectors = TfidfVectorizer().fit_transform([u[2] for u in units])
        centrality = cosine_similarity(vectors).sum(axis=1)
    except ValueError:  # no usable words (e.g. only numbers or stop words)
        centrality = [0.0] * len(units)
    budget = len(text) * (1.0 - target_trr / 100.0)
    keep, used = set(), 0
    for index in sorted(range(len(units)), key=lambda i: (-centrality[i], i)):
        cost = len(units[index][2]) + 1
        if keep and used + cost > budget:
            continue
        keep.add(index)
        used += cost
    return _join([units[i] for i in sorted(keep)])


# ---------------------------------------------------------------- generative
@dataclass
class Level:
    """One generative level: config `compression.levels.<variant>` (defaults live in the schema)."""

    prompt: str
    target_trr: float
    tolerance: float
    retry_prompt: str

    def band(self) -> tuple[float, float]:
        """Accepted TRR band, target ± tolerance: below it the reply is too long, above it over-compressed
        (an l1 at TRR 95 misses its level as surely as an l5 at TRR 40); 99.5+ is empty."""
        return self.target_trr - self.tolerance, min(99.5, self.target_trr + self.tolerance)

    def target_words(self, text: str) -> int:
        return max(3, round(words(text) * (1.0 - self.target_trr / 100.0)))

    def render(self, text: str, retry: bool = False) -> str:
        template = self.retry_prompt if retry and self.retry_prompt else self.prompt
        return template.format(text=text, target_words=self.target_words(text), source_words=words(text))


def max_new_tokens(source_tokens: int, target_trr: float, slack: float) -> int:
    """Cap on reply length from the source length and the target: the budget plus slack."""
    return max(8, math.ceil(source_tokens * (1.0 - target_trr / 100.0) * slack))


# Tokens a summary prompt adds to its piece of text: the level's instructions and the chat template.
PROMPT_RESERVE = 128


def context_needed(max_input_tokens: int, target_trr: float, slack: float) -> int:
    """Context a level needs for its longest piece: the piece, its prompt, and the reply cap. Above
    `model.max_model_len` a reply would be cut at the context's end and its TRR overstated."""
    return max_input_tokens + PROMPT_RESERVE + max_new_tokens(max_input_tokens, target_trr, slack)


def miss_reason(source: str, summary: str, level: Level) -> str | None:
    """Why a reply misses its level (empty, copy, too_long, over_compressed), or None when on target."""
    low, high = level.band()
    if not summary.strip():
        return "empty"
    if summary.strip() == source.strip() or trr(source, summary) < 5.0:
        return "copy"
    rate = trr(source, summary)
    return "too_long" if rate < low else "over_compressed" if rate > high else None


def on_target(source: str, summary: str, level: Level) -> bool:
    return miss_reason(source, summary, level) is None


def _miss(source: str, summary: str, level: Level) -> float:
    """How far a reply is from its target TRR (an empty reply is furthest)."""
    return abs(trr(source, summary) - level.target_trr) if summary.strip() else math.inf


def chunk_text(text: str, count_tokens, max_input_tokens: int) -> list[str]:
    """Split at sentence (or chat-turn) boundaries into pieces of at most `max_input_tokens`."""
    if count_tokens([text])[0] <= max_input_tokens:
        return [text]
    units = split_sentences(text)
    sizes = count_tokens([prefix + sentence for _, prefix, sentence in units])
    chunks, current, size = [], [], 0
    for unit, n in zip(units, sizes):
        if current and size + n > max_input_tokens:
            chunks.append(_join(current))
            current, size = [], 0
        current.append(unit)  # a single over-long sentence becomes its own chunk
        size += n
    if current:
        chunks.append(_join(current))
    return chunks


def _join(units: list[tuple[int, str, str]]) -> str:
    """Sentences of one line joined by spaces, lines (chat turns) by newlines, speakers kept."""
    lines: dict[int, str] = {}
    for line_no, prefix, sentence in units:
        lines[line_no] = f"{lines[line_no]} {sentence}" if line_no in lines else prefix + sentence
    return "\n".join(lines.values())


def summarise(engine, docs: list[dict], level: Level, *, slack: float, max_input_tokens: int,
              repetition_penalty: float) -> list[dict]:
    """Summarise every item (chunked where needed) in batched passes through one engine."""
    pieces = []  # (doc index, chunk text)
    for d, doc in enumerate(docs):
        for chunk in chunk_text(doc["text"], engine.count_tokens, max_input_tokens):
            pieces.append((d, chunk))
    texts = [chunk for _, chunk in pieces]
    caps = [max_new_tokens(n, level.target_trr, slack) for n in engine.count_tokens(texts)]
    context = engine.settings.max_model_len

    def ask(indices: list[int], retry: bool) -> list[tuple[str, bool]]:
        """(reply, cut): a reply is cut when it stopped at the end of the context, not at its own end or cap."""
        prompts = [[{"role": "user", "content": level.render(texts[i], retry=retry)}] for i in indices]
        room = [context - len(engine.prompt_ids(c)) for c in prompts]
        limits = [max(1, min(caps[i], r)) for i, r in zip(indices, room)]
        replies = engine.generate(prompts, max_tokens=limits, repetition_penalty=repetition_penalty)
        return [(reply.text, reply.truncated and limit < caps[i]) for reply, limit, i in zip(replies, limits, indices)]

    first = ask(list(range(len(texts))), retry=False)
    summaries, cut = [t for t, _ in first], [c for _, c in first]
    attempts = [1] * len(pieces)
    retry = [i for i, (t, s) in enumerate(zip(texts, summaries)) if cut[i] or not on_target(t, s, level)]
    if retry and level.retry_prompt:
        again = ask(retry, retry=True)
        for i, (summary, was_cut) in zip(retry, again):
            attempts[i] = 2
            # Keep the retry if it is on target, else whichever reply is closer to it.
            if (not was_cut and on_target(texts[i], summary, level)) or \
                    _miss(texts[i], summary, level) < _miss(texts[i], summaries[i], level):
                summaries[i], cut[i] = summary, was_cut
    pieces_of: dict[int, list[int]] = {}
    for i, (owner, _) in enumerate(pieces):
        pieces_of.setdefault(owner, []).append(i)
    records = []
    for d, doc in enumerate(docs):
        mine = pieces_of[d]
        text = "\n".join(summaries[i] for i in mine)
        # a piece cut at the context's end is shorter than the model meant: its TRR would be overstated
        reason = "cut" if any(cut[i] for i in mine) else miss_reason(doc["text"], text, level)
        records.append(_record(doc, text, off_target=reason is not None, miss=reason,
                               attempts=max(attempts[i] for i in mine), n_chunks=len(mine)))
    return records


def _record(doc: dict, text: str, **extra) -> dict:
    return {"item_id": doc["item_id"], "title": doc["title"], "text": text, **extra}


def shard_of(items: list, shard: int, shards: int) -> list:
    """The `shard`-th (0-based) of `shards` contiguous, near-equal slices of `items`."""
    bounds = [round(k * len(items) / shards) for k in range(shards + 1)]
    return items[bounds[shard]:bounds[shard + 1]]


def compress_items(variant: str, docs: list[dict], settings: dict, engine_factory=None,
                   backend: str | None = None) -> tuple[list[dict], dict]:
    """(records, meta) of `variant` for `docs`. Items are independent, so any split of them into
    shards gives the same records as one pass."""
    if variant == ORIGINAL:
        records = [_record(d, d["text"], off_target=False, miss=None, attempts=0, n_chunks=1) for d in docs]
        return records, {"variant": variant}
    if variant == EXTRACTIVE:
        target, tolerance = float(settings["target_trr"]), float(settings["tolerance"])
        records = []
        for doc in docs:
            text = extract(doc["text"], target)
            rate = trr(doc["text"], text)
            miss = None if abs(rate - target) <= tolerance else "too_long" if rate < target else "over_compressed"
            records.append(_record(doc, text, off_target=miss is not None, miss=miss, attempts=1, n_chunks=1))
        return records, {"variant": variant, "method": "tfidf-centrality", **settings}
    level = Level(prompt=settings["prompt"], target_trr=float(settings["target_trr"]),
                  tolerance=float(settings["tolerance"]), retry_prompt=settings["retry_prompt"])
    records = []
    if docs:  # an empty shard starts no engine
        engine = engine_factory()
        records = summarise(engine, docs, level, slack=float(settings["max_tokens_slack"]),
                            max_input_tokens=int(settings["max_input_tokens"]),
                            repetition_penalty=float(settings["repetition_penalty"]))
        engine.close()
    meta = {"variant": variant, "level": settings, "backend": backend, "sampling": {
        "temperature": 0.0, "repetition_penalty": settings["repetition_penalty"],
        "max_tokens": f"ceil(source_tokens * (1 - target_trr/100) * {settings['max_tokens_slack']})"}}
    return records, meta


def write_variant(records: list[dict], meta: dict, out_path: str, meta_path: str) -> None:
    off = sum(r["off_target"] for r in records)
    if off:
        log.warning("%s: %d of %d items off target", out_path, off, len(records))
    misses = {}
    for r in records:
        if r["miss"]:
            misses[r["miss"]] = misses.get(r["miss"], 0) + 1
    write_json(meta_path, provenance("compress", meta, n_items=len(records), off_target=off, misses=misses))
    write_jsonl(out_path, records)


def compress(variant: str, docs_paths: list[str], out_paths: list[str], meta_paths: list[str], settings: dict,
             engine_factory=None, shard: tuple[int, int] | None = None, backend: str | None = None) -> None:
    """Write `variant` of each dataset's items (or of one shard of them); generative levels batch every
    dataset through one engine start."""
    datasets = [read_jsonl(p) for p in docs_paths]
    if shard is not None:
        datasets = [shard_of(items, *shard) for items in datasets]
    records, meta = compress_items(variant, [doc for items in datasets for doc in items], settings, engine_factory,
                                   backend)
    start = 0
    for items, out_path, meta_path in zip(datasets, out_paths, meta_paths):
        write_variant(records[start:start + len(items)], meta, out_path, meta_path)
        start += len(items)


def gather(parts: list[str], part_metas: list[str], out_path: str, meta_path: str) -> None:
    """Join a sharded variant's parts, in shard order, into the file one unsharded job writes."""
    records = [r for p in parts for r in read_jsonl(p)]
    metas = [read_json(m)["settings"] for m in part_metas]
    if any(m != metas[0] for m in metas):
        raise StageError(f"{out_path}: its shards were made with different settings")
    write_variant(records, metas[0], out_path, meta_path)


# ---------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress compress")
    parser.description = "write one compressed variant of one or more datasets (or one shard, or gather shards)"
    parser.add_argument("--variant", required=True)
    parser.add_argument("--docs", nargs="+", help="docs.jsonl per dataset")
    parser.add_argument("--out", nargs="+", required=True, help="output variant file per dataset (same order)")
    parser.add_argument("--meta", nargs="+", required=True, help="provenance file per output (same order)")
    parser.add_argument("--shard", type=int, nargs=2, metavar=("K", "N"), help="write only shard K (0-based) of N")
    parser.add_argument("--gather", nargs="+", help="shard files to join into --out, in order (no model needed)")
    parser.add_argument("--gather-meta", nargs="+", help="the shards' provenance files, same order")
    parser.add_argument("--settings", type=parse_json_arg, default={}, help="this variant's config as JSON")
    parser.add_argument("--model", help="model directory or hub id (generative levels)")
    parser.add_argument("--engine", type=parse_json_arg, default={},
                        help="engine params as JSON (generative levels): {dtype, backend, model_config, generation}")
    add_runtime_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    apply_runtime(args)
    if args.gather:
        gather(args.gather, args.gather_meta, args.out[0], args.meta[0])
        return
    if not (len(args.docs) == len(args.out) == len(args.meta)):
        raise StageError("compress: --docs, --out and --meta need the same number of files")

    def engine_factory():
        from .engine import EngineSettings, open_engine

        return open_engine(args.engine["backend"], EngineSettings.from_engine(args.model, args.engine),
                           threads=args.threads)

    compress(args.variant, args.docs, args.out, args.meta, args.settings, engine_factory,
             tuple(args.shard) if args.shard else None, args.engine.get("backend"))
    log.info("%s: wrote %s", args.variant, " ".join(args.out))
