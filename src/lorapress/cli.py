"""`lorapress <stage>`: one subcommand per workflow stage, each usable on its own.

This module only dispatches: every stage module owns its arguments (`build_parser`) and
its entry point (`main(argv)`). Settings arrive as JSON slices of the validated config, so
a rule's `params` hold exactly what its stage uses. A problem the user can act on ends with
one line on stderr (file, place, field, problem) and exit status 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from .io import StageError

# stage -> one-line description (the module of the same name holds the stage)
STAGES = {
    "model": "convert the embedded GGUF model to a Hugging Face directory",
    "download": "fetch a dataset file from its official public source (needs a network)",
    "prepare": "load and validate a dataset; write its knowledge items and questions",
    "compress": "write one compressed variant of one or more datasets (or one shard; or gather shards)",
    "stats": "TRR and retention of every compressed variant",
    "train": "train one LoRA/QLoRA adapter on one condition's text",
    "evaluate": "answer a dataset's questions with a chunk of runs; answer log-likelihoods; self-check",
    "judge": "grade a chunk's answers with the LLM judge (or grade the judge's controls)",
    "decompose": "fact survival and open-book answers of one compressed variant",
    "aggregate": "score tables with their intervals, from answers or from a long-format scores file",
    "report": "write the self-contained HTML report",
    "plan": "estimate tokens and GPU-hours of a config before submitting it",
    "check": "preflight before submitting: software, GPU, model, datasets, context, memory, SLURM partitions",
}


def usage() -> str:
    width = max(map(len, STAGES))
    lines = [f"  {name:<{width}}  {text}" for name, text in STAGES.items()]
    return ("usage: lorapress [-v] STAGE [options]   (lorapress STAGE --help for a stage's options)\n\n"
            "How much can a LoRA adapter learn from compressed text?\n\nstages:\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = bool(argv) and argv[0] in ("-v", "--verbose")
    if verbose:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"lorapress: unknown stage {stage!r}\n\n{usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep job logs readable
    module = importlib.import_module(f"lorapress.{stage}")
    try:
        module.main(rest)
    except StageError as exc:
        print(f"lorapress {stage}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # a user's program that failed: its own exit status
    return 0


def entry() -> None:
    """The `lorapress` command: `main`, then an exit that skips the interpreter's teardown. A stage has written
    (atomically) and closed everything by then, and vLLM's CPU engine can abort in teardown ("terminate called
    without an active exception", exit 134) after a job that succeeded."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
