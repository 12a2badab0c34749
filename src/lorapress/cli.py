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


def cmd_download(args) -> None:
    from .download import download

    download(args.hf_dataset, args.filename, args.out, args.revision)


def cmd_prepare(args) -> None:
    from .prepare import prepare

    options = args.options or {}
    n_docs, n_questions = prepare(args.format, args.input, args.docs, args.qa, **options)
    log.info("%s: %d knowledge items, %d questions", args.input, n_docs, n_questions)


def cmd_compress(args) -> None:
    from .compress import compress

    if len(args.docs) != len(args.out):
        raise SystemExit("compress: --docs and --out need the same number of files")
    compress(args.variant, args.docs, args.out, args.settings,
             lambda: _engine_factory(args.model, args.generation, args.model_config)())
    log.info("%s: wrote %s", args.variant, " ".join(args.out))


def cmd_stats(args) -> None:
    from .stats import compute_stats

    compute_stats(args.compressed, args.docs, args.out, args.items_out, args.tokenizer)


def cmd_train(args) -> None:
    from .train import TrainSettings, train

    settings = TrainSettings.from_dict(args.settings)
    summary = train(args.model, args.text, args.out, settings, threads=args.threads)
    log.info("trained %s: loss %.3f -> %.3f in %.1fs", args.out, summary["loss_first"], summary["loss_last"],
             summary["train_seconds"])


def _judge_factory(judge: dict, generation: dict, model_config: dict):
    """None = judge with the base model's engine; else a separate engine or an endpoint."""
    from .endpoint import PREFIX, EndpointJudge

    model = judge.get("model", "base")
    if model == "base":
        return None
    if model.startswith(PREFIX):
        return lambda: EndpointJudge(model, judge.get("base_url"), judge.get("api_key_env", "OPENAI_API_KEY"),
                                     seed=generation.get("seed", 0))
    return _engine_factory(model, generation, model_config)


def cmd_evaluate(args) -> None:
    from .evaluate import run_evaluate

    settings = {**args.settings, "judge_max_tokens": args.judge.get("max_tokens", 8)}
    n = run_evaluate(_engine_factory(args.model, args.generation, args.model_config), args.runs, args.qa,
                     args.out, args.meta, settings, _judge_factory(args.judge, args.generation, args.model_config),
                     args.control)
    log.info("%s: %d predictions", args.out, n)


def cmd_aggregate(args) -> None:
    import pandas as pd

    from .aggregate import aggregate, question_scores, scores_table, write_csv

    qs = None
    if args.predictions:
        by_dataset: dict[str, list[str]] = {}
        for path in args.predictions:  # results/eval/{dataset}/chunkNNN.jsonl
            by_dataset.setdefault(Path(path).parent.name, []).append(path)
        qs_frames, score_frames = [], []
        for dataset, pairs in args.experiments.items():
            records = pd.concat([pd.read_json(p, lines=True) for p in by_dataset.get(dataset, [])], ignore_index=True)
            dataset_qs = question_scores(records, dataset)
            qs_frames.append(dataset_qs)
            score_frames.append(scores_table(dataset_qs, dataset, [tuple(pair) for pair in pairs]))
        qs = pd.concat(qs_frames, ignore_index=True)
        scores = pd.concat(score_frames, ignore_index=True)
        write_csv(qs, Path(args.out) / "question_scores.csv")
        write_csv(scores, args.scores)
    else:
        scores = pd.read_csv(args.scores)
        if args.question_scores:
            qs = pd.read_csv(args.question_scores)
    trr = pd.read_csv(args.trr) if args.trr else None
    for path in aggregate(scores, args.metric, args.out, qs, trr):
        log.info("wrote %s", path)


def cmd_report(args) -> None:
    from .report import build_report

    benchmarks = sorted(str(p) for p in Path(args.benchmarks_dir).rglob("*.tsv")) if args.benchmarks_dir else []
    build_report(args.trr, args.trr_items, args.scores, args.tables, args.summary, args.metric, args.config, args.out,
                 benchmarks)


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

    p = sub.add_parser("download", help="fetch a dataset file from its official public source (needs a network)")
    p.add_argument("--hf-dataset", required=True, help="Hugging Face dataset repository")
    p.add_argument("--filename", required=True)
    p.add_argument("--revision", default="main")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_download)

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
    p.add_argument("--control", help="general-knowledge control questions (JSON lines), answered by every run")
    p.add_argument("--generation", type=_json, default={})
    p.add_argument("--model-config", type=_json, default={})
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("aggregate", help="score tables from predictions or from a long-format scores CSV")
    p.add_argument("--scores", required=True, help="long-format scores CSV (read, or written with --predictions)")
    p.add_argument("--metric", required=True, help="metric of the derived tables, e.g. f1")
    p.add_argument("--out", required=True, help="directory for the derived tables")
    p.add_argument("--predictions", nargs="*", help="results/eval/{dataset}/*.jsonl files to score")
    p.add_argument("--experiments", type=_json, default={}, help='{"dataset": [[experiment, run_id], ...]}')
    p.add_argument("--question-scores", help="per-question scores CSV (for CIs) when reading --scores")
    p.add_argument("--trr", help="trr.csv, for the rank <-> compression fit")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("report", help="write the self-contained HTML report")
    p.add_argument("--trr", required=True)
    p.add_argument("--trr-items", required=True)
    p.add_argument("--scores", required=True)
    p.add_argument("--tables", nargs="+", required=True, help="{experiment}_{dataset}.csv tables")
    p.add_argument("--summary", required=True, help="summary.json from aggregate")
    p.add_argument("--benchmarks-dir", help="folder of Snakemake benchmark .tsv files, for the cost table")
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
