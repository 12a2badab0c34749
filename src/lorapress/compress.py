"""Stage `compress`: write one compressed variant of a dataset's knowledge items.

- `original_text`: the items unchanged (the reference condition);
- `summ_l1_slight` ... `summ_l5_extreme`: generative summaries by the base model
  through vLLM, each level with its own prompt and target TRR. Length is
  controlled, not hoped for: the prompt states a word budget, `max_tokens` caps
  the reply from the source length and the target, and a reply outside its
  band (empty, a near-copy, or too long) is retried once with a stricter
  prompt, then kept and flagged `off_target`. Inputs longer than the model's
  context are summarised chunk by chunk and the summaries joined;
- `ext`: extractive selection: TF-IDF sentence vectors scored by centrality
  (summed cosine similarity, as in LexRank), best sentences kept in their
  original order until the target TRR is reached.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from . import EXTRACTIVE, ORIGINAL
from .io import read_jsonl, write_json, write_jsonl, provenance

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
    """One generative level: config `compression.levels.<variant>`."""

    prompt: str
    target_trr: float
    tolerance: float = 15.0
    retry_prompt: str = ""

    def band(self) -> tuple[float, float]:
        """Accepted TRR band: below it is too long; 99.5+ is empty."""
        return self.target_trr - self.tolerance, 99.5

    def target_words(self, text: str) -> int:
        return max(3, round(words(text) * (1.0 - self.target_trr / 100.0)))

    def render(self, text: str, retry: bool = False) -> str:
        template = self.retry_prompt if retry and self.retry_prompt else self.prompt
        return template.format(text=text, target_words=self.target_words(text), source_words=words(text))


def max_new_tokens(source_tokens: int, target_trr: float, slack: float) -> int:
    """Cap on reply length from the source length and the target: the budget plus slack."""
    return max(8, math.ceil(source_tokens * (1.0 - target_trr / 100.0) * slack))


def on_target(source: str, summary: str, level: Level) -> bool:
    low, high = level.band()
    if not summary.strip():
        return False
    if summary.strip() == source.strip() or trr(source, summary) < 5.0:
        return False  # a copy, not a compression
    return low <= trr(source, summary) <= high


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


def summarise(engine, docs: list[dict], level: Level, *, slack: float, max_input_tokens: int) -> list[dict]:
    """Summarise every item (chunked where needed) in batched passes through one engine."""
    pieces = []  # (doc index, chunk text)
    for d, doc in enumerate(docs):
        for chunk in chunk_text(doc["text"], engine.count_tokens, max_input_tokens):
            pieces.append((d, chunk))
    texts = [chunk for _, chunk in pieces]
    caps = [max_new_tokens(n, level.target_trr, slack) for n in engine.count_tokens(texts)]
    summaries = engine.chat([[{"role": "user", "content": level.render(t)}] for t in texts], max_tokens=caps)
    attempts = [1] * len(pieces)
    retry = [i for i, (t, s) in enumerate(zip(texts, summaries)) if not on_target(t, s, level)]
    if retry and level.retry_prompt:
        again = engine.chat(
            [[{"role": "user", "content": level.render(texts[i], retry=True)}] for i in retry],
            max_tokens=[caps[i] for i in retry],
        )
        for i, summary in zip(retry, again):
            attempts[i] = 2
            # Keep the retry if it is on target, else whichever reply is closer to it.
            if on_target(texts[i], summary, level) or _miss(texts[i], summary, level) < _miss(texts[i], summaries[i], level):
                summaries[i] = summary
    pieces_of: dict[int, list[int]] = {}
    for i, (owner, _) in enumerate(pieces):
        pieces_of.setdefault(owner, []).append(i)
    records = []
    for d, doc in enumerate(docs):
        mine = pieces_of[d]
        text = "\n".join(summaries[i] for i in mine)
        records.append(_record(doc, text, off_target=not on_target(doc["text"], text, level),
                               attempts=max(attempts[i] for i in mine), n_chunks=len(mine)))
    return records


def _record(doc: dict, text: str, **extra) -> dict:
    return {"item_id": doc["item_id"], "title": doc["title"], "text": text, **extra}


def compress(variant: str, docs_paths: list[str], out_paths: list[str], settings: dict, engine_factory=None) -> None:
    """Write `variant` of each dataset's items; generative levels batch every dataset through one engine.

    `settings` is the rule's config slice; a `.meta.json` with prompts, sampling
    and versions is written next to each output.
    """
    datasets = [read_jsonl(p) for p in docs_paths]
    docs = [doc for items in datasets for doc in items]
    if variant == ORIGINAL:
        records = [_record(d, d["text"], off_target=False, attempts=0, n_chunks=1) for d in docs]
        meta = {"variant": variant}
    elif variant == EXTRACTIVE:
        target, tolerance = float(settings["target_trr"]), float(settings.get("tolerance", 15.0))
        records = []
        for doc in docs:
            text = extract(doc["text"], target)
            records.append(_record(doc, text, off_target=abs(trr(doc["text"], text) - target) > tolerance,
                                   attempts=1, n_chunks=1))
        meta = {"variant": variant, "method": "tfidf-centrality", **settings}
    else:
        level = Level(prompt=settings["prompt"], target_trr=float(settings["target_trr"]),
                      tolerance=float(settings.get("tolerance", 15.0)), retry_prompt=settings.get("retry_prompt", ""))
        engine = engine_factory()
        records = summarise(engine, docs, level, slack=float(settings["max_tokens_slack"]),
                            max_input_tokens=int(settings["max_input_tokens"]))
        meta = {"variant": variant, "level": settings, "sampling": {
            "temperature": 0.0, "seed": engine.settings.seed, "repetition_penalty": engine.settings.repetition_penalty,
            "max_tokens": f"ceil(source_tokens * (1 - target_trr/100) * {settings['max_tokens_slack']})"}}
    start = 0
    for items, out_path in zip(datasets, out_paths):
        mine = records[start:start + len(items)]
        start += len(items)
        off = sum(r["off_target"] for r in mine)
        if off:
            log.warning("%s: %d of %d items off target", out_path, off, len(mine))
        write_json(out_path.removesuffix(".jsonl") + ".meta.json", provenance(meta, n_items=len(mine), off_target=off))
        write_jsonl(out_path, mine)
