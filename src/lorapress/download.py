"""Stage `download`: fetch a dataset file that has an official public source.

Only for datasets whose config names a `download` source (LongMemEval on the
Hugging Face hub); the file lands at the dataset's `path`, atomically. Needs
a network; on machines without one, put the file at `path` yourself.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from .io import atomic_path

log = logging.getLogger(__name__)


def download(hf_dataset: str, filename: str, out: str | Path, revision: str | None = None) -> Path:
    from huggingface_hub import hf_hub_download

    cached = hf_hub_download(repo_id=hf_dataset, filename=filename, repo_type="dataset", revision=revision)
    with atomic_path(out) as tmp:
        shutil.copyfile(cached, tmp)
    log.info("downloaded %s/%s -> %s", hf_dataset, filename, out)
    return Path(out)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress download")
    parser.description = "fetch a dataset file from its official public source (needs a network)"
    parser.add_argument("--hf-dataset", required=True, help="Hugging Face dataset repository")
    parser.add_argument("--filename", required=True)
    parser.add_argument("--revision", required=True, help="branch, tag or commit")
    parser.add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    download(args.hf_dataset, args.filename, args.out, args.revision)
