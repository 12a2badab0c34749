"""`lorapress <stage>`: one subcommand per workflow stage, each usable on its own.

Rules call these; settings arrive as JSON slices of the validated config, so a
rule's `params` hold exactly what its stage uses. Bad input ends with one line
on stderr (file, place, field, problem) and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .io import InputError

log = logging.getLogger("lorapress")


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _engine_factory(model: str, generation: dict, model_config: dict):
    from .engine import Engine, EngineSettings

    settings = EngineSettings.from_config(model, generation, model_config)
    return lambda **kwargs: Engine(settings, **kwargs)


# ---------------------------------------------------------------- stages
def cmd_model(args) -> None:
    from .model import prepare_model

    prepare_model(args.base, args.out, args.dtype)


def cmd_prepare(args) -> None:
    from .prepare import prepare

    options = args.options or {}
    n_docs, n_questions = prepare(args.format, args.input, args.docs, args.qa, **options)
    log.info("%s: %d knowledge items, %d questions", args.input, n_docs, n_questions)


def cmd_compress(args) -> None:
    from .compress import compress

    if len(args.docs) != len(args.out):
        raise SystemExit("compress: --docs and --out need the same number of files")
    engine = None

    def shared_engine():  # started at most once per job, for all datasets
        nonlocal engine
        if engine is None:
            engine = _engine_factory(args.model, args.generation, args.model_config)()
        return engine

    for docs, out in zip(args.docs, args.out):
        n = compress(args.variant, docs, out, out.removesuffix(".jsonl") + ".meta.json", args.settings, shared_engine)
        log.info("%s -> %s (%d items)", docs, out, n)


def cmd_stats(args) -> None:
    from .stats import compute_stats

    compute_stats(args.compressed, args.docs, args.out, args.items_out, args.tokenizer)


def cmd_train(args) -> None:
    from .train import TrainSettings, train

    settings = TrainSettings.from_dict(args.settings)
    summary = train(args.model, args.text, args.out, settings, threads=args.threads)
    log.info("trained %s: loss %.3f -> %.3f in %.1fs", args.out, summary["loss_first"], summary["loss_last"],
             summary["train_seconds"])


def cmd_evaluate(args) -> None:
    from .evaluate import run_evaluate

    judge_factory = None
    judge_model = args.judge.get("model", "base")
    if judge_model != "base":
        judge_factory = _engine_factory(judge_model, args.generation, args.judge)
    settings = {**args.settings, "judge_max_tokens": args.judge.get("max_tokens", 8)}
    n = run_evaluate(_engine_factory(args.model, args.generation, args.model_config), args.runs, args.qa,
                     args.out, args.meta, settings, judge_factory)
    log.info("%s: %d predictions", args.out, n)


def cmd_aggregate(args) -> None:
    import pandas as pd

    from .aggregate import aggregate, scores_table, write_csv

    if args.predictions:
        frames = []
        for dataset, runs in args.experiments.items():
            files = [p for p in args.predictions if Path(p).parent.name == dataset]
            predictions = pd.concat([pd.read_json(p, lines=True) for p in files], ignore_index=True)
            frames.append(scores_table(predictions, dataset, [tuple(pair) for pair in runs]))
        scores = pd.concat(frames, ignore_index=True)
        write_csv(scores, args.scores)
    else:
        scores = pd.read_csv(args.scores)
    for path in aggregate(scores, args.metric, args.out):
        log.info("wrote %s", path)


def cmd_report(args) -> None:
    from .report import build_report

    build_report(args.trr, args.trr_items, args.scores, args.compression, args.metric, args.config, args.out)


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorapress", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    p = sub.add_parser("model", help="convert the embedded GGUF model to a Hugging Face directory")
    p.add_argument("--base", required=True, help="model.base, e.g. builtin:smollm2-135m-instruct")
    p.add_argument("--out", required=True, help="output model directory")
    p.add_argument("--dtype", default="float32", help="dtype of the saved weights")
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("prepare", help="load and validate a dataset; write docs.jsonl and qa.jsonl")
    p.add_argument("--format", required=True, choices=["wiki_jsonl", "longmemeval"])
    p.add_argument("--input", required=True, help="dataset file")
    p.add_argument("--docs", required=True, help="output knowledge items (JSON lines)")
    p.add_argument("--qa", required=True, help="output questions (JSON lines)")
    p.add_argument("--options", type=_json, help="loader options as JSON (limit, sample, seed, question_types)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("compress", help="write one compressed variant of one or more datasets")
    p.add_argument("--variant", required=True)
    p.add_argument("--docs", nargs="+", required=True, help="docs.jsonl per dataset")
    p.add_argument("--out", nargs="+", required=True, help="output variant file per dataset (same order)")
    p.add_argument("--settings", type=_json, default={}, help="this variant's config as JSON")
    p.add_argument("--model", help="model directory or hub id (generative levels)")
    p.add_argument("--generation", type=_json, default={}, help="config `generation` as JSON")
    p.add_argument("--model-config", type=_json, default={}, help="config `model` as JSON")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("stats", help="TRR and retention of every compressed variant")
    p.add_argument("--compressed", nargs="+", required=True, help="results/compressed/{dataset}/{variant}.jsonl files")
    p.add_argument("--docs", nargs="+", required=True, help="results/data/{dataset}/docs.jsonl files")
    p.add_argument("--out", required=True, help="summary CSV (trr.csv)")
    p.add_argument("--items-out", required=True, help="per-item CSV")
    p.add_argument("--tokenizer", help="model directory whose tokenizer counts tokens")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("train", help="train one LoRA/QLoRA adapter on one condition's text")
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True, help="the condition's compressed items (JSON lines)")
    p.add_argument("--out", required=True, help="adapter directory")
    p.add_argument("--settings", type=_json, required=True, help="config `train` plus rank/items/seed as JSON")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="answer and judge a dataset's questions with a chunk of runs")
    p.add_argument("--model", required=True)
    p.add_argument("--qa", required=True)
    p.add_argument("--runs", type=_json, required=True, help='JSON list of {"run_id", "adapter", "rank"}')
    p.add_argument("--out", required=True, help="per-question records (JSON lines)")
    p.add_argument("--meta", required=True, help="provenance JSON")
    p.add_argument("--settings", type=_json, required=True, help="config `evaluate` as JSON")
    p.add_argument("--judge", type=_json, default={"model": "base"}, help="config `judge` as JSON")
    p.add_argument("--generation", type=_json, default={})
    p.add_argument("--model-config", type=_json, default={})
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("aggregate", help="score tables from predictions or from a long-format scores CSV")
    p.add_argument("--scores", required=True, help="long-format scores CSV (read, or written with --predictions)")
    p.add_argument("--metric", required=True, help="metric of the derived tables, e.g. f1")
    p.add_argument("--out", required=True, help="directory for the derived tables")
    p.add_argument("--predictions", nargs="*", help="results/eval/{dataset}/*.jsonl files to score")
    p.add_argument("--experiments", type=_json, default={}, help='{"dataset": [[experiment, run_id], ...]}')
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("report", help="write the self-contained HTML report")
    p.add_argument("--trr", required=True)
    p.add_argument("--trr-items", required=True)
    p.add_argument("--scores", required=True)
    p.add_argument("--compression", nargs="+", required=True)
    p.add_argument("--metric", required=True)
    p.add_argument("--config", type=_json, default={})
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep job logs readable
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        args.func(args)
    except InputError as exc:
        print(f"lorapress {args.stage}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
