"""Stage `compress`: write one compressed variant of each dataset's knowledge items.

A variant is defined in the config (`compression.variants`, lorapress.variants); by kind:
- original (`original_text`): the items unchanged (the reference condition);
- generate (`summ_l1_slight` ... `summ_l5_extreme`, rewrites): the compressor model answers the
  variant's prompt (greedy, through vLLM by default, on CPUs too: `compression.backend`),
  each variant with its own prompt and target TRR (per dataset). Length is
  controlled, not hoped for: the prompt states a word budget, `max_tokens` caps
  the reply from the source length and the target, and a reply outside its
  band (empty, a near-copy, too long or over-compressed) is retried once with a
  stricter prompt, then kept and flagged `off_target` with its reason. Inputs
  longer than the model's context are summarised chunk by chunk and the
  summaries joined. Only the text is compressed: an item's title (a chat
  session's dated header) is kept in every variant;
  A rewrite has a negative target (an expansion: -100 doubles the text).
- extract (`ext`): sentences ranked by `method` (TF-IDF centrality: summed cosine similarity,
  as in LexRank; or sumy's TextRank, LexRank, LSA), best kept in their original order until
  the target TRR is reached;
- command: the user's program reads {"id", "title", "text"} JSON lines on stdin and writes
  {"id", "text"} lines on stdout; it fails the job with its own exit status;
- file: {"id", "text"} JSON lines compressed elsewhere, checked for coverage.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
from dataclasses import dataclass

import json
import subprocess

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


def tfidf_ranking(sentences: list[str]) -> list[int]:
    """Sentence indices, most central first: TF-IDF vectors, centrality = summed cosine similarity."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    try:
        centrality = cosine_similarity(TfidfVectorizer().fit_transform(sentences)).sum(axis=1)
    except ValueError:  # no usable words (e.g. only numbers or stop words)
        centrality = [0.0] * len(sentences)
    return sorted(range(len(sentences)), key=lambda i: (-centrality[i], i))


SUMY_METHODS = {"textrank": "sumy.summarizers.text_rank.TextRankSummarizer",
                "lexrank": "sumy.summarizers.lex_rank.LexRankSummarizer",
                "lsa": "sumy.summarizers.lsa.LsaSummarizer"}


def sumy_ranking(sentences: list[str], method: str) -> list[int]:
    """Sentence indices, best first, as sumy's summarizer rates them. Our sentences (pysbd, chat turns kept
    apart) go in as one paragraph; words are split by NLTK's Treebank tokenizer, which needs no downloaded
    data (sumy's default English tokenizer needs punkt); sumy's English stemmer and stop words. sumy returns
    its choice in document order, so the ranking is read from the order in which its `count` callable (which
    it calls with every sentence sorted by rating, best first) sees them."""
    import importlib

    from nltk.tokenize import TreebankWordTokenizer
    from sumy.models.dom import ObjectDocumentModel, Paragraph, Sentence
    from sumy.nlp.stemmers import Stemmer
    from sumy.utils import get_stop_words

    class Words:
        _words = TreebankWordTokenizer()

        def to_words(self, sentence):
            return tuple(w for w in self._words.tokenize(sentence) if any(c.isalnum() for c in w))

    module, name = SUMY_METHODS[method].rsplit(".", 1)
    summarizer = getattr(importlib.import_module(module), name)(Stemmer("english"))
    summarizer.stop_words = get_stop_words("english")
    words = Words()
    document = ObjectDocumentModel([Paragraph([Sentence(s, words) for s in sentences])])
    seen: list = []

    def count(infos):  # sumy's hook for "how many": it gets the sentences best first
        seen.extend(infos)
        return infos

    summarizer(document, count)
    order = [info.order for info in seen]
    return order + [i for i in range(len(sentences)) if i not in set(order)]


def extract(text: str, target_trr: float, method: str = "tfidf") -> str:
    """Keep the best-ranked sentences, in original order, until the length budget is used."""
    units = split_sentences(text)
    if len(units) <= 1:
        return text
    sentences = [u[2] for u in units]
    ranking = tfidf_ranking(sentences) if method == "tfidf" else sumy_ranking(sentences, method)
    budget = len(text) * (1.0 - target_trr / 100.0)
    keep, used = set(), 0
    for index in ranking:
        cost = len(units[index][2]) + 1
        if keep and used + cost > budget:
            continue
        keep.add(index)
        used += cost
    return _join([units[i] for i in sorted(keep)])


# ---------------------------------------------------------------- generative
@dataclass
class Level:
    """A generate variant for one dataset: its prompt, target TRR, tolerance and retry prompt (lorapress.variants)."""

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
    rate = trr(source, summary)
    # a near-copy misses a summary; a rewrite (target below 5, an expansion) misses only by copying verbatim
    if summary.strip() == source.strip() or (level.target_trr >= 5.0 and rate < 5.0):
        return "copy"
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


def level_of(settings: dict) -> Level:
    return Level(prompt=settings["prompt"], target_trr=float(settings["target_trr"]),
                 tolerance=float(settings["tolerance"]), retry_prompt=settings.get("retry_prompt") or "")


def band_miss(source: str, text: str, settings: dict) -> str | None:
    """Off target against the variant's target TRR ± tolerance (None when it sets no target)."""
    if settings.get("target_trr") is None:
        return None
    target, rate = float(settings["target_trr"]), trr(source, text)
    if abs(rate - target) <= float(settings["tolerance"]):
        return None
    return "too_long" if rate < target else "over_compressed"


def _records_of(docs: list[dict], texts: dict[str, str], settings: dict) -> list[dict]:
    return [_record(d, texts[d["item_id"]], off_target=(m := band_miss(d["text"], texts[d["item_id"]], settings))
                    is not None, miss=m, attempts=1, n_chunks=1) for d in docs]


def checked_texts(lines: list[str], docs: list[dict], source: str) -> dict[str, str]:
    """item id -> text from {"id", "text"} JSON lines, covering every item exactly once: one line naming the
    source, line and field on the first gap (unknown id, an id twice, an empty text, an item missing)."""
    wanted, texts = {d["item_id"] for d in docs}, {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StageError(f"{source}: line {n}: not JSON ({exc.msg})") from None
        item_id, text = (record.get("id"), record.get("text")) if isinstance(record, dict) else (None, None)
        if not isinstance(item_id, str):
            raise StageError(f"{source}: line {n}: field id: missing or not a string")
        if item_id not in wanted:
            raise StageError(f"{source}: line {n}: id {item_id!r} is no item of this dataset")
        if item_id in texts:
            raise StageError(f"{source}: line {n}: id {item_id!r} a second time")
        if not isinstance(text, str) or not text.strip():
            raise StageError(f"{source}: line {n} (id {item_id!r}): field text: missing or empty")
        texts[item_id] = text
    missing = [d["item_id"] for d in docs if d["item_id"] not in texts]
    if missing:
        raise StageError(f"{source}: no text for item {missing[0]!r} ({len(missing)} of {len(docs)} items missing)")
    return texts


class CommandFailed(StageError):
    """The user's program failed: the job ends with its exit status."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def run_command(argv: list[str], docs: list[dict], settings: dict) -> list[str]:
    """The program's stdout lines for the items on its stdin ({"id", "title", "text"}, plus target_trr when
    the variant sets one); its failure as one line with its exit status and last stderr line."""
    extra = {"target_trr": settings["target_trr"]} if settings.get("target_trr") is not None else {}
    stdin = "".join(json.dumps({"id": d["item_id"], "title": d["title"], "text": d["text"], **extra},
                               ensure_ascii=False) + "\n" for d in docs)
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    except OSError as exc:
        raise CommandFailed(f"command {argv[0]!r}: cannot run ({exc.strerror})", 127) from None
    if done.stderr.strip():
        log.info("command stderr:\n%s", done.stderr.rstrip()[-4000:])
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise CommandFailed(f"command {' '.join(argv)!r} exited with status {done.returncode}: {last}",
                            done.returncode or 1)
    return done.stdout.splitlines()


def compressor_name(settings: dict) -> str:
    """Who wrote the variant, for the tables' first column: "base" (the aggregate stage names the model), another
    model or endpoint, the extraction method, the user's command or file, or none."""
    kind = settings.get("kind", "original")
    if kind == "generate":
        return settings.get("compressor", "base")
    if kind == "extract":
        method = settings.get("method", "tfidf")
        return "TF-IDF extractive" if method == "tfidf" else f"{method} extractive (sumy)"
    if kind == "command":
        return "command: " + " ".join(settings["command"])
    return f"file {settings['path']}" if kind == "file" else "none"


def compress_items(variant: str, docs: list[dict], settings: dict, engine=None,
                   backend: str | None = None) -> tuple[list[dict], dict]:
    """(records, meta) of `variant` for `docs` of one dataset, from its settings for that dataset. `engine`:
    a callable giving the (shared, lazily started) engine of a generate variant. Items are independent, so
    any split of them into shards gives the same records as one pass."""
    kind = settings.get("kind", "original")
    meta = {"variant": variant, "kind": kind, "compressor": compressor_name(settings)}
    if kind == "original":
        return [_record(d, d["text"], off_target=False, miss=None, attempts=0, n_chunks=1) for d in docs], meta
    if kind == "extract":
        method = settings.get("method", "tfidf")
        texts = {d["item_id"]: extract(d["text"], float(settings["target_trr"]), method) for d in docs}
        return _records_of(docs, texts, settings), {**meta, **settings}
    if kind == "command":
        argv = settings["command"]
        lines = run_command(argv, docs, settings) if docs else []
        texts = checked_texts(lines, docs, f"the output of {' '.join(argv)!r}")
        return _records_of(docs, texts, settings), {**meta, **settings}
    if kind == "file":
        path = settings["path"]
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError as exc:
            raise StageError(f"{path}: cannot read ({exc.strerror})") from None
        texts = checked_texts(lines, docs, path)
        return _records_of(docs, texts, settings), {**meta, **settings}
    records = []
    if docs:  # an empty shard starts no engine
        records = summarise(engine(), docs, level_of(settings), slack=float(settings["max_tokens_slack"]),
                            max_input_tokens=int(settings["max_input_tokens"]),
                            repetition_penalty=float(settings["repetition_penalty"]))
    return records, {**meta, "level": settings, "backend": backend, "sampling": {
        "temperature": 0.0, "repetition_penalty": settings["repetition_penalty"],
        "max_tokens": f"ceil(source_tokens * (1 - target_trr/100) * {settings['max_tokens_slack']})"}}


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


def compress(variant: str, datasets: list[str], docs_paths: list[str], out_paths: list[str], meta_paths: list[str],
             settings: dict[str, dict], engine_factory=None, shard: tuple[int, int] | None = None,
             backend: str | None = None) -> None:
    """Write `variant` of each dataset's items (or of one shard of them), each from its own settings; a
    generate variant puts every dataset through one engine start. Nothing is written until every dataset
    is done."""
    groups = [read_jsonl(p) for p in docs_paths]
    if shard is not None:
        groups = [shard_of(items, *shard) for items in groups]
    started = []

    def engine():
        if not started:
            started.append(engine_factory())
        return started[0]

    try:
        made = [compress_items(variant, items, settings[d], engine, backend) for d, items in zip(datasets, groups)]
    finally:
        for e in started:
            e.close()
    for (records, meta), out_path, meta_path in zip(made, out_paths, meta_paths):
        write_variant(records, meta, out_path, meta_path)


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
    parser.add_argument("--datasets", nargs="+", help="the datasets' names, in the order of --docs")
    parser.add_argument("--docs", nargs="+", help="docs.jsonl per dataset")
    parser.add_argument("--out", nargs="+", required=True, help="output variant file per dataset (same order)")
    parser.add_argument("--meta", nargs="+", required=True, help="provenance file per output (same order)")
    parser.add_argument("--shard", type=int, nargs=2, metavar=("K", "N"), help="write only shard K (0-based) of N")
    parser.add_argument("--gather", nargs="+", help="shard files to join into --out, in order (no model needed)")
    parser.add_argument("--gather-meta", nargs="+", help="the shards' provenance files, same order")
    parser.add_argument("--settings", type=parse_json_arg, default={},
                        help="this variant's definition per dataset as JSON: {dataset: settings}")
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
    if not (len(args.datasets) == len(args.docs) == len(args.out) == len(args.meta)):
        raise StageError("compress: --datasets, --docs, --out and --meta need the same number of entries")
    missing = [d for d in args.datasets if d not in args.settings]
    if missing:
        raise StageError(f"compress: --settings has no entry for dataset {missing[0]}")

    def engine_factory():
        from .engine import EngineSettings, open_engine

        first = args.settings[args.datasets[0]]
        if str(first.get("compressor", "")).startswith("openai:"):
            from .endpoint import EndpointCompressor

            model = args.engine.get("model_config", {})
            return EndpointCompressor(first, args.model, model.get("max_model_len", 2560),
                                      args.engine.get("generation", {}).get("seed", 0),
                                      model.get("chat_template_kwargs"))
        return open_engine(args.engine["backend"], EngineSettings.from_engine(args.model, args.engine),
                           threads=args.threads)

    compress(args.variant, args.datasets, args.docs, args.out, args.meta, args.settings, engine_factory,
             tuple(args.shard) if args.shard else None, args.engine.get("backend"))
    log.info("%s: wrote %s", args.variant, " ".join(args.out))
