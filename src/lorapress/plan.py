"""`lorapress plan`: what a config will cost, before any compute is spent.

Per stage and in total: the jobs the workflow will run, the tokens they prefill, generate
and train, and the hours they take at the throughput figures of an editable table
(config/throughput.yaml, each figure with its source). Reads the same config Snakemake does
(config.yaml, then each --configfile merged on top), validates it as the workflow does, and
reads every dataset file to count its items, questions and characters.

Three layers, kept apart:
- I/O at the edges: `load_config`, `load_throughput`, `read_counts`;
- counting (pure): `count_items`, `count_questions`: characters of everything a prompt holds;
- estimating (pure): `stage_*` turn counts + config into `Job`s (engine starts and tokens per
  engine), and `summarise` turns jobs + throughput figures into hours.

Every estimate is a model, not a measurement: tokens are characters × tokens_per_char, replies
are assumed to land on their targets (summaries) or to run to their cap (answers), and the
figures are order-of-magnitude. The output states each assumption beside the numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .io import StageError, write_json

DEFAULT_THROUGHPUT = "config/throughput.yaml"
SCHEMA = "workflow/schemas/config.schema.yaml"

# Figures every profile must state, and the engine kind each rate belongs to.
RATES = {
    ("vllm", "prefill"): "prefill_tokens_per_s",
    ("vllm", "generate"): "generate_tokens_per_s",
    ("transformers", "prefill"): "hf_prefill_tokens_per_s",
    ("transformers", "generate"): "hf_generate_tokens_per_s",
    ("train", "train"): "train_tokens_per_s",
}
STARTS = {"vllm": ("engine_start_s", "model_load_s"), "transformers": ("model_load_s",), "train": ("train_start_s",)}
LORA_FACTOR = "lora_time_factor"
FIGURES = (*RATES.values(), LORA_FACTOR, "engine_start_s", "model_load_s", "train_start_s")
ASSUMPTIONS = ("tokens_per_char", "chat_tokens_per_message", "retry_share", "answer_fill",
               "assumed_question_chars", "assumed_answer_chars")
BACKENDS = ("vllm", "transformers")
# decompose.py leaves this many tokens of the context window for the question and the template
DECOMPOSE_RESERVE = 128


# ================================================================ config and throughput (I/O)
def merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`, dicts merged recursively, anything else replaced (as Snakemake
    merges --configfile over the Snakefile's configfile)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise StageError(f"{path}: not found ({what})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f":{mark.line + 1}" if mark else ""
        raise StageError(f"{path}{place}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StageError(f"{path}: expected a mapping at the top level")
    return data


def load_config(base: str | Path, configfiles: list[str]) -> tuple[dict, Path]:
    """The merged, validated config with its defaults filled, and the schema it was checked against.

    Read as Snakemake reads it: the --configfile files, merged in order, are the whole study on the schema's
    defaults; the base config (config.yaml) only when none is given. The schema is the one beside the base
    config (`workflow/schemas/config.schema.yaml` of the workflow), checked as workflow/rules/common.smk
    checks it: schema, defaults, semantics.
    """
    from .config import ConfigError, check_moved_keys, check_schema, check_semantics, given_variants, \
        normalise_variants

    base = Path(base)
    config = {} if configfiles else \
        _read_yaml(base, "the workflow's config.yaml; run in the workflow directory or pass --base-config")
    for name in configfiles:
        config = merge(config, _read_yaml(Path(name), "--configfile"))
    schema = base.resolve().parent / SCHEMA
    if not schema.is_file():
        raise StageError(f"{schema}: not found (the config schema of the workflow beside {base})")
    try:
        check_moved_keys(config)
        check_schema(config, schema)
        given = given_variants(config)
        fill_defaults(config, schema)
        normalise_variants(config, given, schema)
        check_semantics(config)
    except ConfigError as exc:
        raise StageError(str(exc)) from None
    return config, schema


def fill_defaults(config: dict, schema: Path) -> None:
    """Fill the schema's defaults in place, as the workflow's `validate(config, schema)` does."""
    from snakemake.utils import validate

    try:
        validate(config, str(schema))
    except Exception as exc:  # WorkflowError; check_schema has already named any violation
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageError(f"config: {first}") from None


@dataclass(frozen=True)
class Figure:
    value: float
    source: str


@dataclass(frozen=True)
class Profile:
    """One accelerator profile of the throughput table."""

    name: str
    description: str
    device: str
    gpu: bool  # does the profile describe a GPU (resources.gpu > 0 should pick it)?
    figures: dict[str, Figure]
    assumptions: dict[str, Figure]
    path: str


def _figures(table: dict, keys: tuple[str, ...], where: str, path: Path) -> dict[str, Figure]:
    out = {}
    for key in keys:
        entry = (table or {}).get(key)
        if not isinstance(entry, dict) or "value" not in entry or not entry.get("source"):
            raise StageError(f"{path}: {where}.{key}: missing (needs value and source)")
        value = entry["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
            raise StageError(f"{path}: {where}.{key}.value: expected a number >= 0, got {value!r}")
        if key in RATES.values() and value == 0:
            raise StageError(f"{path}: {where}.{key}.value: a rate must be above 0")
        out[key] = Figure(float(value), " ".join(str(entry["source"]).split()))
    return out


def load_throughput(path: str | Path, profile: str | None, on_gpu: bool) -> Profile:
    """The chosen profile (`--profile`, else the table's default for a GPU or a CPU config)."""
    path = Path(path)
    table = _read_yaml(path, "the throughput table; pass --throughput FILE")
    profiles = table.get("profiles") or {}
    name = profile or (table.get("defaults") or {}).get("gpu" if on_gpu else "cpu")
    if not name:
        raise StageError(f"{path}: defaults.{'gpu' if on_gpu else 'cpu'}: missing; pass --profile NAME")
    if name not in profiles:
        raise StageError(f"{path}: profiles.{name}: no such profile (known: {', '.join(sorted(profiles))})")
    spec = profiles[name]
    return Profile(name=name, description=" ".join(str(spec.get("description", "")).split()),
                   device=str(spec.get("device", "")), gpu=bool(spec.get("gpu", False)),
                   figures=_figures(spec.get("figures"), FIGURES, f"profiles.{name}.figures", path),
                   assumptions=_figures(table.get("assumptions"), ASSUMPTIONS, "assumptions", path),
                   path=str(path))


# ================================================================ counting (pure)
@dataclass(frozen=True)
class Item:
    """One knowledge item: the characters of its title (kept by every variant) and of its text."""

    item_id: str
    title_chars: int
    text_chars: int


@dataclass(frozen=True)
class Question:
    """Characters of everything a question puts into prompts (beside the system prompt)."""

    prompt_chars: int  # the user message of an answer ("Today is ... " + question)
    answer_chars: int
    distractor_chars: tuple[int, ...]  # each distractor's answer (the margin averages over them)
    judge_chars: int  # the judge's prompt without the answer being graded
    open_book_chars: int  # the open-book user message without its context
    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class Counts:
    """A dataset as the estimate sees it."""

    items: tuple[Item, ...]
    questions: tuple[Question, ...]
    source: str  # the file read, or how the counts were assumed
    note: str = ""  # where assumed counts come from (a reference size's sources), listed with the assumptions

    @property
    def chars(self) -> int:
        return sum(i.title_chars + i.text_chars for i in self.items)


def count_items(docs: list[dict]) -> tuple[Item, ...]:
    return tuple(Item(d["item_id"], len(d["title"]), len(d["text"])) for d in docs)


def count_questions(questions: list[dict]) -> tuple[Question, ...]:
    """Characters of each question's prompts, rendered by the stages' own prompt builders."""
    from .decompose import open_book_messages
    from .evaluate import question_messages
    from .judge import judge_prompt

    out = []
    for q in questions:
        user = question_messages(q, "")[-1]["content"]
        open_book = open_book_messages(q, "", "")[-1]["content"]
        distractors = q.get("distractors") or ([q["distractor"]] if q.get("distractor") else [])
        out.append(Question(
            prompt_chars=len(user), answer_chars=len(q["answer"]),
            distractor_chars=tuple(len(d) for d in distractors),
            judge_chars=len(judge_prompt(q, "x")) - 1, open_book_chars=len(open_book),
            item_ids=tuple(q.get("item_ids") or ())))
    return tuple(out)


def count_dataset(docs: list[dict], questions: list[dict], source: str) -> Counts:
    return Counts(count_items(docs), count_questions(questions), source)


def assumed_counts(fmt: str, n_items: int, n_questions: int, chars: int, question_chars: int,
                   answer_chars: int) -> Counts:
    """Counts of a dataset not at hand: `n_items` items of equal length sharing `chars` characters;
    `n_questions` questions of `question_chars` with answers (and distractors) of `answer_chars`,
    each about one item."""
    per_item = chars // n_items
    items = tuple(Item(f"i{k}", 0, per_item + (1 if k < chars % n_items else 0)) for k in range(n_items))
    qtype = "wiki" if fmt == "wiki_jsonl" else "multi-session"
    extra = {} if fmt == "wiki_jsonl" else {"question_date": "2023/05/30 (Tue) 23:40"}
    records = [{"question": "q" * question_chars, "answer": "a" * answer_chars, "distractor": "d" * answer_chars,
                "question_type": qtype, "item_ids": [items[k % n_items].item_id], **extra}
               for k in range(n_questions)]
    source = f"assumed: {n_items} items, {n_questions} questions, {chars} characters (--assume)"
    return Counts(items, count_questions(records), source)


@dataclass(frozen=True)
class Reference:
    """Published size of an official dataset file, for planning before it is downloaded."""

    file: str
    items: int  # knowledge items (LongMemEval: sessions; see `source` for how the count was derived)
    questions: int
    chars: int
    source: str


# The official LongMemEval files (Wu et al. 2024, "LongMemEval: Benchmarking Chat Assistants on Long-Term
# Interactive Memory", arXiv 2410.10813; repository README, github.com/xiaowu0162/LongMemEval, read at commit
# 9e0b455). Published: 500 questions in every file; _s ≈ 115k tokens of history per question ("~40 history
# sessions" for Llama 3, README); _m ≈ 500 sessions and ≈ 1.5M tokens per question (README; paper abstract);
# oracle = only the evidence sessions. NOT published: the number of unique sessions (filler sessions recur
# across questions, and prepare keeps each session id once) and exact character counts. Derived here:
# - items = questions × sessions per question: session occurrences, an UPPER BOUND of the unique sessions;
#   _s uses 48 sessions per question (a measured mean of 47.7, mnemoverse.com's LongMemEval card; the README
#   says ~40); oracle assumes 2 evidence sessions per question (1 to 6 by question type, same card);
# - chars = questions × tokens per question × 4 characters per token (the tokens_per_char rule of thumb); for
#   oracle ~2k tokens per question (same card). _s gives 230M characters, consistent with the ~277 MB JSON file.
# question counts per type (paper, Table 1/Figure 3; also FIELD_NOTES): used for datasets.*.question_types.
LONGMEMEVAL_QUESTIONS_PER_TYPE = {
    "temporal-reasoning": 133, "multi-session": 133, "knowledge-update": 78, "single-session-user": 70,
    "single-session-assistant": 56, "single-session-preference": 30,
}
LONGMEMEVAL_REFERENCE = {r.file: r for r in (
    Reference("longmemeval_s_cleaned.json", 500 * 48, 500, 500 * 115_000 * 4,
              "500 questions × ~115k tokens (README, paper); items = 500 × 48 session occurrences (upper bound)"),
    Reference("longmemeval_m_cleaned.json", 500 * 500, 500, 500 * 1_500_000 * 4,
              "500 questions × ~500 sessions, ~1.5M tokens (README, paper); items = 250,000 session occurrences "
              "(upper bound)"),
    Reference("longmemeval_oracle.json", 500 * 2, 500, 500 * 2_000 * 4,
              "500 questions, evidence sessions only (README); derived: ~2 sessions, ~2k tokens per question"),
)}
# the files before the 2025/09 clean-up have the same published sizes
for _name in ("longmemeval_s.json", "longmemeval_m.json"):
    LONGMEMEVAL_REFERENCE[_name] = LONGMEMEVAL_REFERENCE[_name.replace(".json", "_cleaned.json")]


def reference_for(spec: dict) -> Reference | None:
    """The reference size of the official file a longmemeval dataset names (path or download.filename)."""
    if spec["format"] != "longmemeval":
        return None
    names = [Path(spec["path"]).name] + ([spec["download"]["filename"]] if spec.get("download") else [])
    return next((LONGMEMEVAL_REFERENCE[n] for n in names if n in LONGMEMEVAL_REFERENCE), None)


def reference_counts(spec: dict, ref: Reference, question_chars: int, answer_chars: int) -> Counts:
    """Counts of a reference file after the dataset's question_types/limit/sample: items and characters
    shrink in proportion to the questions kept (each question brings its own history)."""
    n = ref.questions
    if spec.get("question_types"):
        n = sum(LONGMEMEVAL_QUESTIONS_PER_TYPE[t] for t in set(spec["question_types"]))
    for key in ("limit", "sample"):
        if spec.get(key):
            n = min(n, spec[key])
    share = n / ref.questions
    counts = assumed_counts("longmemeval", max(1, round(ref.items * share)), n, max(1, round(ref.chars * share)),
                            question_chars, answer_chars)
    kept = "" if n == ref.questions else f", {n} of its {ref.questions} questions kept"
    return Counts(counts.items, counts.questions, f"reference: {ref.file}, not downloaded yet{kept}",
                  note=f"{ref.file} (not downloaded): {ref.source}; derivation and sources in "
                       "lorapress/plan.py LONGMEMEVAL_REFERENCE")


# ================================================================ estimating (pure)
@dataclass
class Tokens:
    """The estimate's own assumptions (config/throughput.yaml `assumptions`)."""

    per_char: float
    per_message: float
    retry_share: float
    answer_fill: float
    sources: dict[str, str] = field(default_factory=dict)  # assumption -> where its value comes from

    def of(self, chars: float) -> float:
        return chars * self.per_char


@dataclass
class Job:
    """One job: the engines it starts and the tokens it puts through each (engine, kind, via LoRA?)."""

    starts: list[str] = field(default_factory=list)  # engine kinds started: vllm, transformers, train
    tokens: Counter = field(default_factory=Counter)  # (engine, kind, lora) -> tokens
    gpu: bool = True  # holds the accelerator (False: CPU-only or remote work, not costed)

    def add(self, engine: str, kind: str, tokens: float, lora: bool = False) -> None:
        if tokens:
            self.tokens[(engine, kind, lora)] += tokens


@dataclass
class Stage:
    name: str
    jobs: list[Job]
    assumptions: list[str]
    note: str = ""


def evaluation_backend(config: dict) -> str:
    """evaluate.backend, with `auto` as the workflow resolves it: vLLM where jobs get a GPU."""
    backend = config["evaluate"]["backend"]
    if backend == "auto":
        return "vllm" if config["resources"]["gpu"] > 0 else "transformers"
    return backend


def keep_share(config: dict, variant: str, dataset: str) -> float:
    """Share of an item's text a variant keeps for `dataset`, assuming it lands on its target TRR (titles are
    kept whole; a rewrite's negative target keeps more than all; a command or file without a target: all)."""
    from .variants import target_of

    target = target_of(config["compression"]["variants"][variant], dataset)
    return 1.0 if target is None else 1.0 - target / 100.0


def shard_slices(items: tuple, shards: int) -> list[tuple]:
    """The `shards` contiguous, near-equal slices `lorapress compress --shard` makes."""
    bounds = [round(k * len(items) / shards) for k in range(shards + 1)]
    return [items[bounds[k]:bounds[k + 1]] for k in range(shards)]


def summary_tokens(items: tuple[Item, ...], level: dict, comp: dict, t: Tokens) -> tuple[float, float]:
    """(prefill, generate) tokens of one summary level over `items`.

    Each item's text is cut into ceil(tokens / max_input_tokens) pieces; each piece is one
    prompt (the level's instructions + one chat message) and one reply of its target length,
    piece × (1 − target_trr/100). With a retry_prompt, a `retry_share` of pieces is asked once
    more. The reply cap (× max_tokens_slack) bounds a reply; the estimate assumes the target.
    """
    from .variants import piece_size

    overhead = t.of(len(level["prompt"].replace("{text}", ""))) + t.per_message
    keep = 1.0 - level["target_trr"] / 100.0
    prefill = generate = 0.0
    for item in items:
        tokens = t.of(item.text_chars)
        pieces = max(1, math.ceil(tokens / piece_size(level, comp)[0]))
        prefill += tokens + pieces * overhead
        generate += tokens * keep
    retry = 1.0 + (t.retry_share if level.get("retry_prompt") else 0.0)
    return prefill * retry, generate * retry


def stage_compress(config: dict, counts: dict[str, Counts], t: Tokens) -> Stage:
    """Per variant, by kind. A generate variant a local model writes (the summary levels, rewrites): one GPU
    job for all unsharded datasets (one engine start); a dataset in compression.shards gets that many jobs
    plus a gather. Every other kind is one CPU job for every dataset, not costed: original, extract
    (sentence ranking), command and file (the user's program or file: their cost is theirs), and a
    generate variant behind an endpoint (its tokens are the endpoint's, listed apart)."""
    from .variants import compressor_kind, runs_a_model, settings_for

    comp = config["compression"]
    shards = {d: n for d, n in comp["shards"].items() if n > 1}
    unsharded = [d for d in sorted(counts) if d not in shards]
    jobs, endpoint_tokens = [], 0.0
    for variant, definition in comp["variants"].items():
        if not runs_a_model(definition):
            jobs.append(Job(gpu=False))  # compress_cpu
            if compressor_kind(definition) == "endpoint":
                for d in sorted(counts):
                    endpoint_tokens += sum(summary_tokens(counts[d].items, settings_for(definition, d), comp, t))
            continue
        groups = [[(d, counts[d].items) for d in unsharded]] if unsharded else []
        for d in sorted(shards):
            groups += [[(d, part)] for part in shard_slices(counts[d].items, shards[d])]
            jobs.append(Job(gpu=False))  # gather_shards
        for group in groups:
            job = Job()
            if any(items for _, items in group):  # an empty shard starts no engine
                job.starts.append("vllm")
            for dataset, items in group:
                prefill, generate = summary_tokens(items, settings_for(definition, dataset), comp, t)
                job.add("vllm", "prefill", prefill)
                job.add("vllm", "generate", generate)
            jobs.append(job)
    assumptions = [
        "generate: each reply lands on its variant's target, source × (1 − target_trr/100) (a rewrite's negative "
        f"target: longer than its source); the cap is that × max_tokens_slack ({comp['max_tokens_slack']})",
        f"generate: items longer than max_input_tokens ({comp['max_input_tokens']}) are split into "
        "ceil(tokens / max_input_tokens) pieces, each with the variant's prompt",
        f"generate: {t.retry_share:.0%} of pieces retried once (prefill and reply again) on variants with a "
        f"retry_prompt: ×{1 + t.retry_share:g}",
        "original, extract, command and file variants run no GPU: counted as CPU jobs, not costed",
    ]
    if endpoint_tokens:
        assumptions.append(f"generate behind an endpoint: ~{endpoint_tokens:,.0f} tokens (prompt + reply) sent to "
                           "it, not costed here")
    return Stage("compress", jobs, assumptions)


def training_tokens(items: tuple[Item, ...], keep: float, t: Tokens) -> float:
    """Tokens of one epoch: every item as `title\\n\\ntext` + EOS, text at the variant's keep share."""
    return sum(t.of(i.title_chars + 2 + i.text_chars * keep) + 1 for i in items if i.text_chars)


def stage_train(config: dict, counts: dict[str, Counts], t: Tokens) -> Stage:
    """One job per unique trained run (runs shared by experiments are trained once): train.epochs
    passes over the variant's text of the run's first N items (None = all). Every token is
    trained (long items are cut into max_length pieces, never truncated)."""
    from .experiments import runs

    epochs = config["train"]["epochs"]
    jobs = []
    for dataset in sorted(counts):
        for run in runs(config, dataset):
            if run.is_baseline:
                continue
            items = counts[dataset].items if run.items is None else counts[dataset].items[:run.items]
            job = Job(starts=["train"])
            job.add("train", "train",
                    epochs * training_tokens(items, keep_share(config, run.condition, dataset), t))
            jobs.append(job)
    assumptions = [
        f"training: {epochs} epochs × the run's items (title + text + EOS); a compressed variant's text at its "
        "target length",
        "training: padding to the longest row of a batch is not counted (train.packing removes it)",
    ]
    return Stage("train", jobs, assumptions)


def _prompt(t: Tokens, chars: float, messages: int) -> float:
    return t.of(chars) + messages * t.per_message


def answer_tokens(questions: tuple[Question, ...], system_chars: int, reply: float, t: Tokens) -> dict[str, float]:
    """One run's answering of `questions`: a greedy reply each (≤ the cap), and prefill-only
    log-likelihood passes (prompt + reference, prompt + each distractor). An upper bound: the engines
    share the prompt between these passes (prefix caching), which is not counted."""
    prompts = [_prompt(t, system_chars + q.prompt_chars, 2) for q in questions]
    loglik = sum(p + t.of(q.answer_chars) for p, q in zip(prompts, questions))
    loglik += sum(p + t.of(d) for p, q in zip(prompts, questions) for d in q.distractor_chars)
    return {"prefill": sum(prompts) + loglik, "generate": reply * len(questions),
            "mean_prompt": sum(prompts) / len(prompts) if prompts else 0.0}


def stage_evaluate(config: dict, counts: dict[str, Counts], control: tuple[Question, ...], t: Tokens) -> Stage:
    """One job per evaluation chunk (≤ adapters_per_engine runs, one engine start): every run answers
    the dataset's and the control questions; then the self-check answers `self_check.questions`
    of them again per run through the other backend (a second engine start)."""
    from .experiments import eval_chunks

    ev = config["evaluate"]
    backend = evaluation_backend(config)
    other = next(b for b in BACKENDS if b != backend)
    reply = ev["max_tokens"] * t.answer_fill
    system = len(ev["system_prompt"])
    jobs = []
    for dataset in sorted(counts):
        questions = counts[dataset].questions
        per_run = answer_tokens(questions + control, system, reply, t)
        dataset_only = answer_tokens(questions, system, reply, t)
        n_check = min(ev["self_check"]["questions"], len(questions))
        for chunk_runs in eval_chunks(config, dataset).values():
            job = Job(starts=[backend])
            for run in chunk_runs:
                lora = not run.is_baseline
                job.add(backend, "prefill", per_run["prefill"], lora)
                job.add(backend, "generate", per_run["generate"], lora)
            if n_check:
                job.starts.append(other)
                for run in chunk_runs:
                    job.add(other, "prefill", n_check * dataset_only["mean_prompt"], not run.is_baseline)
                    job.add(other, "generate", n_check * reply, not run.is_baseline)
            jobs.append(job)
    assumptions = [
        f"evaluate: backend {backend} (evaluate.backend {ev['backend']}); self-check through {other}: "
        f"{ev['self_check']['questions']} questions per run, a second engine start per chunk",
        f"answers: every reply runs to {t.answer_fill:g} × evaluate.max_tokens ({ev['max_tokens']}) tokens "
        "(an upper bound)",
        f"answers: {len(control)} control questions per run besides the dataset's",
        "answer log-likelihoods: prefill of prompt + reference and prompt + distractor (no prefix caching counted)",
    ]
    return Stage("evaluate", jobs, assumptions)


def _judge_job(config: dict, prompts: list[float], backend: str, t: Tokens) -> Job:
    """A judge job over `prompts` (token counts): prefill only when constrained (one next-token
    distribution over single-token choices), else a reply ≤ judge.max_tokens each; an `openai:`
    judge runs at its endpoint (not costed here)."""
    judge = config["judge"]
    if judge["model"].startswith("openai:"):
        job = Job(gpu=False)
        job.add("endpoint", "prefill", sum(prompts))
        return job
    job = Job(starts=[backend])
    job.add(backend, "prefill", sum(prompts))
    if not judge["constrained"]:
        job.add(backend, "generate", len(prompts) * judge["max_tokens"] * t.answer_fill)
    return job


def _judge_assumptions(config: dict, backend: str) -> list[str]:
    judge = config["judge"]
    if judge["model"].startswith("openai:"):
        return [f"judge: {judge['model']} at {judge['base_url']}: remote, jobs counted, not costed"]
    which = "the base model" if judge["model"] == "base" else f"{judge['model']} (at the profile's 8B-class rates)"
    mode = ("constrained: one prefill per verdict (single-token choices)" if judge["constrained"]
            else f"unconstrained: a reply of judge.max_tokens ({judge['max_tokens']}) per verdict")
    return [f"judge: {which} through {backend}, {mode}"]


def stage_judge(config: dict, counts: dict[str, Counts], t: Tokens) -> Stage:
    """One job per evaluation chunk: a verdict on every dataset answer (control answers are not judged);
    the answer graded is assumed to run to its cap."""
    from .experiments import eval_chunks

    backend = evaluation_backend(config)
    answer_chars = config["evaluate"]["max_tokens"] * t.answer_fill / t.per_char
    jobs = []
    for dataset in sorted(counts):
        prompts = [_prompt(t, q.judge_chars + answer_chars, 1) for q in counts[dataset].questions]
        for chunk_runs in eval_chunks(config, dataset).values():
            jobs.append(_judge_job(config, prompts * len(chunk_runs), backend, t))
    return Stage("judge", jobs, _judge_assumptions(config, backend) +
                 ["judge: the answer graded is as long as evaluate.max_tokens × answer_fill"])


def stage_judge_controls(config: dict, counts: dict[str, Counts], t: Tokens) -> Stage:
    """One job per dataset: the judge grades each question's reference and, where there is one, its
    distractor (2 verdicts per question)."""
    backend = evaluation_backend(config)
    jobs = []
    for dataset in sorted(counts):
        prompts = []
        for q in counts[dataset].questions:
            prompts.append(_prompt(t, q.judge_chars + q.answer_chars, 1))
            if q.distractor_chars:  # the first distractor is the known-wrong control
                prompts.append(_prompt(t, q.judge_chars + q.distractor_chars[0], 1))
        jobs.append(_judge_job(config, prompts, backend, t))
    return Stage("judge_controls", jobs, [])


def context_tokens(question: Question, items: dict[str, Item], keep: float, budget: int, t: Tokens) -> float:
    """The open-book context of a question: its items' title + compressed text, cut at `budget` tokens."""
    chars = sum(items[i].title_chars + 1 + items[i].text_chars * keep + 2 for i in question.item_ids if i in items)
    return min(t.of(chars), budget)


def stage_decompose(config: dict, counts: dict[str, Counts], t: Tokens) -> Stage:
    """One job per variant (when evaluate.open_book): the base model answers every question of every dataset
    with its items' compressed text in the prompt, then scores reference and distractor with that
    same prompt (prefill again)."""
    ev = config["evaluate"]
    if not ev["open_book"]:
        return Stage("decompose", [], [], note="evaluate.open_book is off")
    backend = evaluation_backend(config)
    budget = config["model"]["max_model_len"] - ev["max_tokens"] - DECOMPOSE_RESERVE
    reply = ev["max_tokens"] * t.answer_fill
    system = len(ev["system_prompt"])
    jobs = []
    for variant in config["compression"]["variants"]:  # one job (one model load) per variant, every dataset
        job = Job(starts=[backend])
        for dataset in sorted(counts):
            keep = keep_share(config, variant, dataset)
            items = {i.item_id: i for i in counts[dataset].items}
            for q in counts[dataset].questions:
                prompt = _prompt(t, system + q.open_book_chars, 2) + context_tokens(q, items, keep, budget, t)
                job.add(backend, "prefill", prompt)  # the open-book answer
                job.add(backend, "generate", reply)
                job.add(backend, "prefill", prompt + t.of(q.answer_chars))  # reference log-likelihood
                for d in q.distractor_chars:
                    job.add(backend, "prefill", prompt + t.of(d))
        jobs.append(job)
    assumptions = [f"open book: context = the question's items at the variant's target length, cut at "
                   f"max_model_len − max_tokens − {DECOMPOSE_RESERVE} = {budget} tokens; the reference and "
                   "distractor are scored with the same prompt (prefilled again)"]
    return Stage("decompose", jobs, assumptions)


def other_jobs(config: dict, counts: dict[str, Counts], downloads: int) -> dict[str, int]:
    """Jobs that compute no tokens: conversion of the embedded model, downloads, prepare, stats,
    aggregate, report."""
    jobs = {"convert_model": int(config["model"]["base"].startswith("builtin:")), "download_dataset": downloads,
            "prepare": len(counts), "stats": 1, "aggregate": 1, "report": 1}
    return {k: v for k, v in jobs.items() if v}


def estimate_stages(config: dict, counts: dict[str, Counts], control: tuple[Question, ...], t: Tokens) -> list[Stage]:
    return [stage_compress(config, counts, t), stage_train(config, counts, t),
            stage_evaluate(config, counts, control, t), stage_judge(config, counts, t),
            stage_judge_controls(config, counts, t), stage_decompose(config, counts, t)]


# ---------------------------------------------------------------- hours
def job_seconds(job: Job, figures: dict[str, Figure]) -> tuple[float, set[str]]:
    """(seconds, figures used): engine starts + tokens / rate, LoRA requests on vLLM × lora_time_factor."""
    if not job.gpu:
        return 0.0, set()
    used = {s for engine in job.starts for s in STARTS[engine]}
    seconds = sum(figures[s].value for engine in job.starts for s in STARTS[engine])
    for (engine, kind, lora), tokens in job.tokens.items():
        rate = RATES[(engine, kind)]
        factor = 1.0
        if lora and engine == "vllm":
            factor = figures[LORA_FACTOR].value
            used.add(LORA_FACTOR)
        seconds += tokens / figures[rate].value * factor
        used.add(rate)
    return seconds, used


def _tokens(job: Job, kind: str) -> float:
    return sum(n for (_, k, _), n in job.tokens.items() if k == kind)


def summarise(stage: Stage, profile: Profile, gpus_per_job: int) -> dict:
    """A stage's row: jobs, tokens, hours (job-hours; GPU-hours = job-hours × resources.gpu), the
    longest job, and the figures (with sources) its hours rest on."""
    seconds, used = [], set()
    for job in stage.jobs:
        s, u = job_seconds(job, profile.figures)
        seconds.append(s)
        used |= u
    hours = sum(seconds) / 3600
    return {
        "stage": stage.name,
        "jobs": len(stage.jobs),
        "device_jobs": sum(j.gpu for j in stage.jobs),
        "prefill_tokens": round(sum(_tokens(j, "prefill") for j in stage.jobs)),
        "generate_tokens": round(sum(_tokens(j, "generate") for j in stage.jobs)),
        "train_tokens": round(sum(_tokens(j, "train") for j in stage.jobs)),
        "job_hours": hours,
        "gpu_hours": hours * gpus_per_job,
        "longest_job_hours": max(seconds, default=0.0) / 3600,
        "figures": {k: {"value": profile.figures[k].value, "source": profile.figures[k].source} for k in sorted(used)},
        "assumptions": stage.assumptions,
        "note": stage.note,
    }


# The rules whose jobs a stage's estimate describes (workflow/rules/*.smk); a stage's limit is the lowest of theirs.
STAGE_RULES = {"compress": ("compress", "compress_shard"), "train": ("train",), "evaluate": ("evaluate",),
               "judge": ("judge", "judge_endpoint"), "judge_controls": ("judge_controls", "judge_controls_endpoint"),
               "decompose": ("decompose",)}
DEFAULT_PROFILE_DIR = "profiles/slurm"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(min|d|h|m|s)?", re.IGNORECASE)
_MINUTES = {"d": 1440.0, "h": 60.0, "m": 1.0, "min": 1.0, "s": 1 / 60, None: 1.0}


def runtime_minutes(value) -> float:
    """A Snakemake `runtime` resource in minutes: a number (minutes) or a string such as 90, "2h", "1h30m"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise ValueError(f"runtime {value!r}: expected minutes or a duration such as 2h or 1h30m")
    return sum(float(n) * _MINUTES[unit.lower() if unit else None] for n, unit in parts)


def rule_runtime(profile: dict, rule: str) -> tuple[float, str] | None:
    """(minutes, key) a SLURM profile gives a rule: set-resources.<rule>.runtime, else default-resources.runtime."""
    own = (profile.get("set-resources") or {}).get(rule) or {}
    if "runtime" in own:
        return runtime_minutes(own["runtime"]), f"set-resources.{rule}.runtime"
    default = profile.get("default-resources") or {}
    if "runtime" in default:
        return runtime_minutes(default["runtime"]), "default-resources.runtime"
    return None


def stage_limits(profile: dict) -> dict[str, tuple[float, str]]:
    """stage -> the lowest (minutes, key) among its rules' runtimes in the profile."""
    out = {}
    for stage, rules in STAGE_RULES.items():
        limits = [lim for rule in rules if (lim := rule_runtime(profile, rule)) is not None]
        if limits:
            out[stage] = min(limits)
    return out


TOTAL_KEYS = ("jobs", "device_jobs", "prefill_tokens", "generate_tokens", "train_tokens", "job_hours", "gpu_hours")


def build_plan(config: dict, counts: dict[str, Counts], control: tuple[Question, ...], profile: Profile,
               t: Tokens, *, downloads: int = 0, sources: dict | None = None,
               limits: dict[str, tuple[float, str]] | None = None, limits_file: str = "") -> dict:
    """The whole plan as a JSON-ready dict: datasets, stages, other jobs, total, assumptions, warnings.
    `limits`: stage -> (minutes, key) of the SLURM profile `limits_file` (see `stage_limits`)."""
    gpus = config["resources"]["gpu"]
    rows = [summarise(s, profile, gpus) for s in estimate_stages(config, counts, control, t)]
    for r in rows:
        if limits and r["stage"] in limits:
            r["runtime_limit_min"], r["runtime_limit_key"] = limits[r["stage"]]
    other = other_jobs(config, counts, downloads)
    total = {k: sum(r[k] for r in rows) for k in TOTAL_KEYS}
    total["jobs"] += sum(other.values())
    total["longest_job_hours"] = max(r["longest_job_hours"] for r in rows)
    limit_h = config["resources"]["runtime_min"] / 60
    warnings = [f"{r['stage']}: the longest job is estimated at {r['longest_job_hours']:.1f} h, over "
                f"resources.runtime_min ({config['resources']['runtime_min']} min)"
                for r in rows if r["longest_job_hours"] > limit_h]
    warnings += [f"{r['stage']}: the longest job is estimated at {r['longest_job_hours']:.1f} h, over the "
                 f"profile's limit of {r['runtime_limit_min'] / 60:.1f} h ({limits_file} {r['runtime_limit_key']})"
                 for r in rows if "runtime_limit_min" in r and r["longest_job_hours"] * 60 > r["runtime_limit_min"]]
    if (gpus > 0) != profile.gpu:
        warnings.append(f"resources.gpu is {gpus} but profile {profile.name} describes {profile.device}: "
                        "pick the profile of the machine the jobs run on (--profile)")
    return {
        "config": sources or {},
        "model": config["model"]["base"],
        "profile": {"name": profile.name, "file": profile.path, "device": profile.device,
                    "description": profile.description,
                    "figures": {k: {"value": f.value, "source": f.source} for k, f in profile.figures.items()}},
        "tokens_per_char": t.per_char,
        "datasets": {name: {"items": len(c.items), "questions": len(c.questions), "chars": c.chars,
                            "tokens": round(t.of(c.chars)), "source": c.source} for name, c in sorted(counts.items())},
        "control_questions": len(control),
        "gpus_per_job": gpus,
        "stages": rows,
        "other_jobs": other,
        "total": total,
        "runtime_limits": limits_file or None,
        "assumptions": (general_assumptions(profile, t) + [c.note for _, c in sorted(counts.items()) if c.note]
                        + [a for r in rows for a in r["assumptions"]]),
        "warnings": warnings,
    }


def general_assumptions(profile: Profile, t: Tokens) -> list[str]:
    def why(key: str) -> str:
        return f" [source: {t.sources[key].rstrip('.')}]" if key in t.sources else ""

    return [
        f"tokens = characters × {t.per_char:g}, about {1 / t.per_char:.1f} characters per token"
        f"{why('tokens_per_char')}",
        f"chat template: {t.per_message:g} tokens per message{why('chat_tokens_per_message')}",
        f"replies use {t.answer_fill:g} × their cap{why('answer_fill')}",
        "hours of a job = its engine starts + Σ tokens / rate; jobs in parallel do not shorten GPU-hours",
        f"the figures are order-of-magnitude planning figures from {profile.path} (profile {profile.name}), "
        "not measurements of this workflow",
        "other jobs (model conversion, download, prepare, stats, aggregate, report) and CPU-only compress "
        "variants are counted, not costed",
    ]


# ================================================================ datasets (I/O)
def parse_assume(values: list[str]) -> dict[str, tuple[int, int, int]]:
    out = {}
    for value in values or []:
        name, _, rest = value.partition("=")
        parts = rest.split(",")
        try:
            numbers = tuple(int(p) for p in parts)
        except ValueError:
            numbers = ()
        if not name or len(numbers) != 3 or min(numbers) < 1:
            raise StageError(f"--assume {value}: expected DATASET=ITEMS,QUESTIONS,CHARS (positive integers)")
        out[name] = numbers
    return out


def read_counts(config: dict, assume: dict[str, tuple[int, int, int]],
                profile: Profile) -> tuple[dict[str, Counts], int]:
    """Counts of every dataset (read from its file, assumed, or, for a missing official LongMemEval file, its
    published reference size), and how many downloads the run will need. Every missing dataset without a
    stand-in is named in one error."""
    from .prepare import LOADERS

    unknown = sorted(set(assume) - set(config["datasets"]))
    if unknown:
        raise StageError(f"--assume: unknown datasets {unknown} (config datasets: {sorted(config['datasets'])})")
    question_chars = int(profile.assumptions["assumed_question_chars"].value)
    answer_chars = int(profile.assumptions["assumed_answer_chars"].value)
    counts, downloads, missing = {}, 0, []
    for name, spec in sorted(config["datasets"].items()):
        path = Path(spec["path"])
        source = spec.get("download")
        if name in assume:
            items, questions, chars = assume[name]
            counts[name] = assumed_counts(spec["format"], items, questions, chars, question_chars, answer_chars)
            downloads += int(bool(source) and not path.is_file())
            continue
        if not path.is_file():
            ref = reference_for(spec)
            if ref is not None:
                counts[name] = reference_counts(spec, ref, question_chars, answer_chars)
                downloads += int(bool(source))
                continue
            hint = f"pass --assume {name}=ITEMS,QUESTIONS,CHARS to plan without it"
            if source:
                missing.append(f"datasets.{name}.path: {path} does not exist; it must be downloaded first "
                               f"(`snakemake --configfile CONFIG {path}` fetches it from {source['hf_dataset']}), "
                               f"or {hint}")
            else:
                missing.append(f"datasets.{name}.path: {path} does not exist; put the {spec['format']} file there, "
                               f"or {hint}")
            continue
        options = {k: spec.get(k) for k in ("limit", "sample", "seed", "question_types") if spec.get(k) is not None}
        docs, questions = LOADERS[spec["format"]](path, **options)
        counts[name] = count_dataset(docs, questions, str(path))
    if missing:
        raise StageError(f"{len(missing)} dataset(s) missing: " + "; ".join(missing))
    return counts, downloads


def read_control(config: dict) -> tuple[Question, ...]:
    from .prepare import load_control

    path = config["evaluate"]["control"]
    if not path:
        return ()
    if not Path(path).is_file():
        raise StageError(f"evaluate.control: {path} does not exist (set evaluate.control: null to skip the "
                         "control questions)")
    return count_questions(load_control(path))


# ================================================================ output
def _n(value: float) -> str:
    """Tokens in short form: 950, 12.3k, 4.56M, 1.20G."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}"


def render_text(plan: dict) -> str:
    p = plan["profile"]
    lines = [f"lorapress plan: {' + '.join(plan['config'].get('files', []))}",
             f"model {plan['model']}; throughput profile {p['name']} ({p['file']}): {p['device']}",
             "", f"datasets (tokens ≈ characters × {plan['tokens_per_char']:g}):"]
    for name, d in plan["datasets"].items():
        lines.append(f"  {name:<14} {d['items']:>7,} items {d['questions']:>6,} questions {d['chars']:>13,} chars "
                     f"≈ {_n(d['tokens'])} tokens   [{d['source']}]")
    lines.append(f"  control questions: {plan['control_questions']} (answered by every run)")
    gpus = plan["gpus_per_job"]
    unit = "GPU-h" if gpus else "job-h"
    header = (f"  {'stage':<15}{'jobs':>6}{'on GPU' if gpus else 'heavy':>8}{'prefill':>10}{'generate':>10}"
              f"{'train':>10}{unit:>10}{'longest':>9}")
    hours = f"GPU-hours = job-hours × {gpus} GPU per job" if gpus else "hours of CPU jobs"
    lines += ["", f"estimate ({hours}; tokens and hours are estimates):", header, "  " + "-" * (len(header) - 2)]

    def row(name, r):
        hours = r["gpu_hours"] if gpus else r["job_hours"]
        longest = f"{r['longest_job_hours']:.2f} h" if "longest_job_hours" in r else ""
        return (f"  {name:<15}{r['jobs']:>6}{r['device_jobs']:>8}{_n(r['prefill_tokens']):>10}"
                f"{_n(r['generate_tokens']):>10}{_n(r['train_tokens']):>10}{hours:>10.1f}{longest:>9}")

    for r in plan["stages"]:
        lines.append(row(r["stage"], r) + (f"  ({r['note']})" if r["note"] else ""))
    other = plan["other_jobs"]
    lines.append(f"  {'other':<15}{sum(other.values()):>6}{0:>8}" + " " * 30 + f"{'-':>10}   "
                 + ", ".join(f"{k} {v}" for k, v in other.items()))
    lines += ["  " + "-" * (len(header) - 2), row("total", plan["total"])]
    limited = [r for r in plan["stages"] if "runtime_limit_min" in r]
    if limited:
        lines += ["", f"longest job vs the profile's limit ({plan['runtime_limits']}):"]
        for r in limited:
            over = r["longest_job_hours"] * 60 > r["runtime_limit_min"]
            limit_h = r["runtime_limit_min"] / 60
            lines.append(f"  {r['stage']:<15}{r['longest_job_hours']:>8.2f} h  vs {limit_h:>6.1f} h  "
                         f"{'OVER' if over else 'ok':<5} ({r['runtime_limit_key']})")
    lines += ["", f"throughput figures (profile {p['name']}; edit {p['file']}):"]
    for key, f in p["figures"].items():
        lines.append(f"  {key:<25}{f['value']:>8g}")
        lines += textwrap.wrap(f["source"], width=104, initial_indent=" " * 6, subsequent_indent=" " * 6)
    lines += ["", "assumptions:"]
    for a in plan["assumptions"]:
        lines += textwrap.wrap(a, width=104, initial_indent="  - ", subsequent_indent=" " * 4)
    if plan["warnings"]:
        lines += ["", "warnings:"] + [f"  ! {w}" for w in plan["warnings"]]
    return "\n".join(lines)


# ================================================================ command line
def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--configfile and --base-config: the config read as Snakemake reads it (`load_config`)."""
    parser.add_argument("--configfile", nargs="+", default=[], metavar="FILE",
                        help="config files merged in order on top of the base config (as snakemake --configfile)")
    parser.add_argument("--base-config", default="config.yaml",
                        help="the workflow's config.yaml (default: ./config.yaml); its schema is read beside it")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress plan")
    parser.description = ("estimate, per stage and in total, the tokens to prefill, generate and train and the "
                          "GPU-hours of a config, from an editable throughput table, before submitting it")
    add_config_arguments(parser)
    parser.add_argument("--throughput", default=DEFAULT_THROUGHPUT, help="throughput table (YAML)")
    parser.add_argument("--profile", help="profile of the throughput table (default: the table's gpu or cpu default)")
    parser.add_argument("--tokens-per-char", type=float,
                        help="tokens per character of text (default: the table's assumption, 0.25)")
    parser.add_argument("--assume", action="append", default=[], metavar="DATASET=ITEMS,QUESTIONS,CHARS",
                        help="plan a dataset without its file (e.g. before downloading it); repeatable")
    parser.add_argument("--profile-dir",
                        help=f"SLURM profile whose per-rule runtime limits the longest jobs are compared with "
                             f"(default: {DEFAULT_PROFILE_DIR} when resources.gpu > 0; 'none' to skip)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="what to print")
    parser.add_argument("--out", help="also write the plan as JSON to this file")
    design = parser.add_argument_group("study design (lorapress.design): seeds and questions per claim")
    design.add_argument("--design", action="store_true",
                        help="plan seeds and questions that detect each seed-study claim, from a pilot")
    design.add_argument("--pilot", help="a pilot's per-question scores (results/tables/question_scores.csv)")
    design.add_argument("--power", type=float, default=0.8, help="power wanted per claim (default 0.8)")
    design.add_argument("--metric", help="metric to plan on (default: the config's headline, aggregate.metrics[0])")
    design.add_argument("--max-seeds", type=int, default=20, help="most seeds considered (default 20)")
    return parser


def scaled_counts(counts: Counts, questions: int) -> Counts:
    """A dataset sized to `questions` questions: items and questions repeated (or cut) in proportion,
    i.e. the same questions per item and the same item and question lengths as the dataset at hand."""
    factor = questions / max(1, len(counts.questions))
    n_items = max(1, round(len(counts.items) * factor))
    items = tuple(counts.items[k % len(counts.items)] for k in range(n_items))
    qs = tuple(counts.questions[k % len(counts.questions)] for k in range(questions))
    return Counts(items, qs, f"{counts.source}, scaled to {questions} questions and {n_items} items")


def design(args: argparse.Namespace) -> tuple[list[dict], str]:
    """Seeds and questions per claim from the pilot, each design costed with `build_plan`: train.seeds
    set to that many seeds and the claim's dataset scaled to that many questions (the other datasets as
    the config has them)."""
    import pandas as pd

    from . import design as planner
    from .aggregate import dataset_kind, resolve_metric

    if not args.pilot:
        raise StageError("--design needs --pilot (a pilot's question_scores.csv)")
    if not 0 < args.power < 1:
        raise StageError(f"--power: must lie between 0 and 1, got {args.power}")
    if args.max_seeds < 2:
        raise StageError(f"--max-seeds: must be at least 2 (a seed-level interval needs two seeds per trained cell), "
                         f"got {args.max_seeds}")
    config, profile, t, counts, control, _ = _inputs(args)
    pilot = pd.read_csv(args.pilot)
    missing = {"dataset", "condition", "rank", "items", "seed", "question_id", "metric", "value"} - set(pilot.columns)
    if missing:
        raise StageError(f"--pilot {args.pilot}: lacks columns {sorted(missing)}")
    types = {d: sorted(part.loc[part.get("question_set", pd.Series("dataset", index=part.index)) == "dataset",
                                "question_type"].dropna().unique()) if "question_type" in part else []
             for d, part in pilot.groupby("dataset")}
    unknown = sorted(set(types) - set(counts))
    if unknown:
        raise StageError(f"--pilot: datasets {unknown} are not in the config (config datasets: {sorted(counts)})")
    metric = args.metric or config["aggregate"]["metrics"][0]
    scored = pilot.dropna(subset=["value"]).groupby("dataset")["metric"].unique()
    for dataset in types:  # every pilot dataset gets a claim; a metric it lacks would stop the planning midway
        wanted = resolve_metric(metric, types[dataset])
        if wanted not in scored.get(dataset, []):
            raise StageError(f"--metric {metric}: the pilot {args.pilot} has no {wanted} scores for dataset {dataset} "
                             f"(its metrics there: {', '.join(sorted(scored.get(dataset, [])))})")

    def gpu_hours(dataset: str, seeds: int, questions: int) -> float:
        sized = copy.deepcopy(config)
        sized["train"]["seeds"] = list(range(seeds))
        resized = {**counts, dataset: scaled_counts(counts[dataset], questions)}
        return build_plan(sized, resized, control, profile, t)["total"]["gpu_hours"]

    # GPU-hours are close to bilinear in seeds and questions (training and answers grow with both, the
    # summaries with questions only): four plans per dataset fix the surface the search compares designs
    # on; the chosen design's hours are then planned in full.
    surfaces: dict = {}

    def cost(dataset: str, seeds: int, questions: int) -> float:
        if dataset not in surfaces:  # hours = a + b·x + c·s + d·s·x, x = questions / the dataset's
            q0 = len(counts[dataset].questions)
            h = {(s, x): gpu_hours(dataset, s, x * q0) for s in (1, 2) for x in (1, 2)}
            d = h[2, 2] - h[2, 1] - h[1, 2] + h[1, 1]
            c, b = h[2, 1] - h[1, 1] - d, h[1, 2] - h[1, 1] - d
            surfaces[dataset] = (q0, h[1, 1] - b - c - d, b, c, d)
        q0, a, b, c, d = surfaces[dataset]
        x = questions / q0
        return a + b * x + c * seeds + d * seeds * x

    alpha = 1 - config["aggregate"]["confidence"]
    rows = planner.design_claims(pilot, lambda d: resolve_metric(metric, types[d]), lambda d: dataset_kind(types[d]),
                                 wanted=args.power, alpha=alpha, max_seeds=args.max_seeds, cost=cost,
                                 final_cost=lambda d, s, q: gpu_hours(d, s, q))
    note = ("\nGPU-h: the whole config's GPU-hours (lorapress plan) with train.seeds = that many seeds and the "
            "claim's dataset scaled to that many questions (items in proportion, lengths as the dataset's); "
            f"the other datasets as configured. Today's config: {len(config['train']['seeds'])} seeds.")
    return rows, planner.render(rows, args.power) + note


def _inputs(args: argparse.Namespace):
    """Config, throughput profile, token assumptions, dataset counts and control questions of a plan."""
    config, _ = load_config(args.base_config, args.configfile)
    profile = load_throughput(args.throughput, args.profile, config["resources"]["gpu"] > 0)
    a = profile.assumptions
    per_char = args.tokens_per_char if args.tokens_per_char is not None else a["tokens_per_char"].value
    if not per_char > 0:
        raise StageError(f"--tokens-per-char: must be above 0, got {per_char}")
    sources = {k: f.source for k, f in a.items()}
    if args.tokens_per_char is not None:
        sources["tokens_per_char"] = "--tokens-per-char"
    t = Tokens(per_char=per_char, per_message=a["chat_tokens_per_message"].value,
               retry_share=a["retry_share"].value, answer_fill=a["answer_fill"].value, sources=sources)
    counts, downloads = read_counts(config, parse_assume(args.assume), profile)
    control = read_control(config)
    return config, profile, t, counts, control, downloads


def plan(args: argparse.Namespace) -> dict:
    config, profile, t, counts, control, downloads = _inputs(args)
    files = {"files": args.configfile or [args.base_config], "throughput": args.throughput}
    limits, limits_file = read_limits(args.profile_dir, config)
    return build_plan(config, counts, control, profile, t, downloads=downloads, sources=files, limits=limits,
                      limits_file=limits_file)


def read_limits(profile_dir: str | None, config: dict) -> tuple[dict[str, tuple[float, str]], str]:
    """The runtime limits of --profile-dir (explicit: must exist), or of profiles/slurm for a GPU config (if there)."""
    if profile_dir in ("none", ""):
        return {}, ""
    explicit = profile_dir is not None
    if not explicit:
        if config["resources"]["gpu"] <= 0:
            return {}, ""
        profile_dir = DEFAULT_PROFILE_DIR
    path = Path(profile_dir) / "config.yaml"
    if not path.is_file():
        if explicit:
            raise StageError(f"{path}: not found (--profile-dir; 'none' skips the runtime limits)")
        return {}, ""
    profile = _read_yaml(path, "the SLURM profile")
    try:
        return stage_limits(profile), str(path)
    except ValueError as exc:
        raise StageError(f"{path}: {exc}") from None


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.design:
        rows, text = design(args)
        if args.out:
            write_json(args.out, rows)
        sys.stdout.write((json.dumps(rows, indent=2, ensure_ascii=False) if args.format == "json" else text) + "\n")
        return
    result = plan(args)
    if args.out:
        write_json(args.out, result)
    if args.format == "json":
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(result) + "\n")
