"""The config, checked before any compute, and what it resolves to on this machine.

Everything that could only fail at a later stage fails here, at parse time, with one line
naming the key: schema violations (types, enums, "at least two" lists, a prompt without
{text}), and what a schema cannot say (an `openai:` judge without `base_url`, experiment
variants missing from `compression.variants`, a level without its prompt, shards of an
unknown dataset, an `auto` dtype that cannot be decided here). Dataset files are not
checked here: they are needed only when a job reads them, so `snakemake --unlock`, `--lint`
and `--report` work before the data exist.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .compress import context_needed
from .experiments import experiment_runs
from .hardware import Hardware, choose_dtype, detect
from .variants import VariantError, piece_size, read_schema, resolve_variants, settings_for

SCHEMA = "workflow/schemas/config.schema.yaml"


class ConfigError(ValueError):
    """One line: the config key and what is wrong with it."""


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def check_schema(config: dict, schema_path: str | Path) -> None:
    """The first (most relevant) schema violation as one line naming its key."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(read_schema(schema_path)).iter_errors(config))
    if error is not None:
        message = error.message if len(error.message) < 200 else error.message[:200] + "..."
        raise ConfigError(f"config {_where(error.absolute_path)}: {message}")


MOVED = {"levels": "compression.variants.<level>", "ext": "compression.variants.ext"}


def check_moved_keys(config: dict) -> None:
    """Keys of earlier versions, named with where they went (before the schema calls them unknown)."""
    for key, now in MOVED.items():
        if key in (config.get("compression") or {}):
            raise ConfigError(f"config compression.{key}: moved to {now} (a variant's definition: kind, "
                              "target_trr, prompt, ...; see the schema)")


def given_variants(config: dict):
    """compression.variants as the user wrote it (None: the default), taken before the schema's defaults are
    filled in: those would put every key's default into every definition, a seed's prompts included."""
    return copy.deepcopy((config.get("compression") or {}).get("variants"))


def normalise_variants(config: dict, given, schema_path: str | Path | None = None) -> None:
    """Replace compression.variants by every variant's full definition (from `given`, the user's list of seed
    names or mapping, or the schema's default), in place, so every stage reads one mapping name -> definition."""
    from .variants import seed_definitions

    try:
        config["compression"]["variants"] = resolve_variants(
            seed_definitions(schema_path) if given is None else given, sorted(config["datasets"]), schema_path)
    except VariantError as exc:
        raise ConfigError(str(exc)) from None


def check_semantics(config: dict) -> None:
    """What the schema cannot express; `config` has its defaults filled and its variants normalised."""
    variants = config["compression"]["variants"]
    comp, context = config["compression"], config["model"]["max_model_len"]
    for name, definition in variants.items():
        if definition["kind"] != "generate":
            continue
        pieces, key = piece_size(definition, comp, name)
        for dataset in sorted(config["datasets"]):
            target = settings_for(definition, dataset)["target_trr"]
            needed = context_needed(pieces, target, comp["max_tokens_slack"])
            if needed > context:
                raise ConfigError(
                    f"config model.max_model_len: {context} tokens cannot hold {name}'s longest piece for {dataset} "
                    f"({key} {pieces}), its prompt and its reply cap ({needed} tokens in all); raise "
                    f"model.max_model_len or lower {key}")
    if context - config["evaluate"]["max_tokens"] - 128 < 64:  # decompose's open-book context budget
        raise ConfigError(f"config model.max_model_len: {context} tokens leave no room for an open-book context "
                          f"beside evaluate.max_tokens ({config['evaluate']['max_tokens']})")
    experiments = config["experiments"]
    for name, key in (("compression", "variants"), ("rank_compression", "variants")):
        chosen = experiments[name].get(key) or []
        missing = [v for v in chosen if v not in variants]
        if experiments[name]["enabled"] and missing:
            raise ConfigError(f"config experiments.{name}.{key}: {missing} not in compression.variants")
    for name, spec in experiments.items():
        unknown = [d for d in spec.get("datasets") or [] if d not in config["datasets"]]
        if unknown:
            raise ConfigError(f"config experiments.{name}.datasets: unknown datasets {unknown}")
    for name in config["datasets"]:
        if not experiment_runs(config, name):  # its tables would be declared but never written
            raise ConfigError(f"config datasets.{name}: no experiment evaluates it (every experiments.*.datasets "
                              "leaves it out); remove it from datasets or add it to an experiment")
    if "original_text" not in variants and any(
            experiments[e]["enabled"] for e in ("capacity", "rank_items")):
        raise ConfigError("config compression.variants: capacity and rank_items train on original_text; add it")
    unknown = [d for d in config["compression"]["shards"] if d not in config["datasets"]]
    if unknown:
        raise ConfigError(f"config compression.shards: unknown datasets {unknown}")
    judge = config["judge"]
    if judge["model"].startswith("openai:") and not judge["base_url"]:
        raise ConfigError("config judge.base_url: required when judge.model is openai:NAME")
    for name, dataset in config["datasets"].items():
        source = dataset.get("download")
        if source:
            expected = f"resources/datasets/{name}/{source['filename']}"
            if dataset["path"] != expected:
                raise ConfigError(f"config datasets.{name}.path: must be {expected} when datasets.{name}.download is set")


def on_gpu(config: dict) -> bool:
    """Do the jobs that compute run on a GPU (requested from the scheduler, or visible here)?"""
    return config["resources"]["gpu"] > 0


def resolve(config: dict, hardware: Hardware | None = None) -> dict:
    """What `auto` settings mean here: {dtype, dtype_reason, train_dtype, backend, compression_backend, hardware}."""
    hardware = hardware or detect()
    gpu = on_gpu(config) or hardware.gpu_capability is not None
    try:
        dtype, reason = choose_dtype(config["model"]["dtype"], hardware, on_gpu=gpu)
        train_dtype = dtype if config["train"]["compute_dtype"] == "auto" else \
            choose_dtype(config["train"]["compute_dtype"], hardware, on_gpu=gpu)[0]
    except ValueError as exc:
        raise ConfigError(f"config model.dtype: {exc}") from None
    def backend(setting: str) -> str:
        return ("vllm" if gpu else "transformers") if setting == "auto" else setting

    # Summaries: vLLM everywhere. On a CPU it generates 1.7x (AVX2) to 3x (AVX512-BF16) faster than
    # transformers, which repays its engine start from ~20 items per level (BENCHMARKS.md). Answers and
    # scores through adapters: transformers on a CPU, where vLLM's LoRA path is the slow one.
    compression = config["compression"]["backend"]
    return {"dtype": dtype, "dtype_reason": reason, "train_dtype": train_dtype,
            "backend": backend(config["evaluate"]["backend"]),
            "compression_backend": "vllm" if compression == "auto" else compression, "hardware": hardware.describe()}


def oversized_tiers(config: dict, dataset: str, n_items: int) -> str | None:
    """One line naming the first capacity or rank_items tier larger than the dataset's `n_items` items (it
    would train on every item and be plotted at a size it never had), or None."""
    for name in ("capacity", "rank_items"):
        spec = config["experiments"][name]
        if not spec["enabled"] or (spec.get("datasets") is not None and dataset not in spec["datasets"]):
            continue
        too_large = [n for n in spec["items"] if n != "all" and n > n_items]
        if too_large:
            return (f"config experiments.{name}.items: {too_large[0]} is more than the {n_items} items of dataset "
                    f"{dataset} ({config['datasets'][dataset]['path']}); use at most {n_items}, or `all`")
    return None
