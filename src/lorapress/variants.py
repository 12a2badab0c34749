"""The study's variable: the variants (conditions), defined in the config.

`compression.variants` is a mapping name -> definition (or a list of seed variant names). The
seven seed variants, with their prompts and targets, are the schema's default; a variant named
like one takes the seed's definition for every key it leaves out. Five kinds:

- original: the text as it is;
- generate: a compressor model answers a prompt with {text} (a summary, or a rewrite with a
  negative target TRR, i.e. an expansion); the compressor is the base model, another model, or
  an OpenAI-compatible endpoint;
- extract: sentences ranked by `method` kept until the target TRR;
- command: any program, id-keyed JSON lines in and out;
- file: texts compressed elsewhere, id-keyed JSON lines.

Values marked "per dataset" in the schema (target_trr, prompt, retry_prompt, path) take one value
for every dataset or a mapping dataset -> value; `settings_for` resolves them for one dataset.
Everything here is pure: the config in, definitions or one-line errors out.
"""

from __future__ import annotations

import copy
import shlex
from functools import lru_cache
from pathlib import Path

import yaml

from . import BASELINE, SUMMARY_LEVELS, VARIANTS

KINDS = ("original", "generate", "extract", "command", "file")
# the keys each kind reads (beside kind and description); any other key is a mistake
KIND_KEYS = {
    "original": (),
    "generate": ("target_trr", "tolerance", "prompt", "retry_prompt", "max_input_tokens", "compressor",
                 "compressor_revision", "base_url", "api_key_env"),
    "extract": ("target_trr", "tolerance", "method"),
    "command": ("command", "target_trr", "tolerance"),
    "file": ("path", "target_trr", "tolerance"),
}
REQUIRED = {"generate": ("target_trr", "prompt"), "extract": ("target_trr",), "command": ("command",),
            "file": ("path",)}
PER_DATASET = ("target_trr", "prompt", "retry_prompt", "path")
ENDPOINT = "openai:"
DEFAULT_SCHEMA = Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"


class VariantError(ValueError):
    """One line naming the config key."""


def read_schema(schema_path: str | Path | None = None) -> dict:
    """The config schema, read once per process (validating the config and resolving the variants read it, in each
    Snakemake start); shared, so not to be modified."""
    return _read_schema(str(schema_path or DEFAULT_SCHEMA))


@lru_cache(maxsize=4)
def _read_schema(path: str) -> dict:
    # libyaml's loader where PyYAML has it: the same document, ~8x faster (this one has ~5,000 nodes)
    return yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def seed_definitions(schema_path: str | Path | None = None) -> dict[str, dict]:
    """The seed study's seven variants, as the schema's default of compression.variants."""
    return copy.deepcopy(read_schema(schema_path)["properties"]["compression"]["properties"]["variants"]["default"])


def key_defaults(schema_path: str | Path | None = None) -> dict:
    """The defaults of a definition's keys (tolerance, compressor, method, ...), from the schema."""
    props = read_schema(schema_path)["definitions"]["variant_definition"]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def resolve_variants(variants, datasets, schema_path: str | Path | None = None) -> dict[str, dict]:
    """Every variant's full definition, in config order: seeds filled in, each kind's defaults set,
    and checked (one line naming the key on the first mistake)."""
    seeds = seed_definitions(schema_path)
    if isinstance(variants, list):
        unknown = [v for v in variants if v not in seeds]
        if unknown:
            raise VariantError(f"config compression.variants: {unknown[0]} is not a seed variant "
                               f"({', '.join(seeds)}); define it: compression.variants.{unknown[0]}: {{kind: ...}}")
        variants = {v: None for v in variants}
    defaults = key_defaults(schema_path)
    resolved = {}
    for name, given in variants.items():
        given = dict(given or {})
        if name in seeds and ("kind" not in given or given["kind"] == seeds[name]["kind"]):
            given = {**copy.deepcopy(seeds[name]), **given}
        key = f"config compression.variants.{name}"
        if "kind" not in given:
            raise VariantError(f"{key}.kind: missing (one of {', '.join(KINDS)}); only a seed variant's name "
                               "may leave it out")
        kind = given["kind"]
        allowed = {"kind", "description", *KIND_KEYS[kind]}
        extra = sorted(set(given) - allowed)
        if extra:
            raise VariantError(f"{key}.{extra[0]}: not a key of a {kind} variant (its keys: "
                               f"{', '.join(sorted(allowed))})")
        missing = [k for k in REQUIRED.get(kind, ()) if k not in given]
        if missing:
            raise VariantError(f"{key}.{missing[0]}: required for a {kind} variant")
        definition = {k: v for k, v in defaults.items() if k in allowed}
        definition.update(given)
        for field in PER_DATASET:
            if field in definition:
                _check_per_dataset(definition[field], datasets, f"{key}.{field}")
        if kind == "generate" and definition["compressor"].startswith(ENDPOINT) and not definition["base_url"]:
            raise VariantError(f"{key}.base_url: required when compressor is {definition['compressor']}")
        if kind == "file" and isinstance(definition["path"], str) and len(datasets) > 1 \
                and "{dataset}" not in definition["path"]:
            raise VariantError(f"{key}.path: one file for {len(datasets)} datasets; put {{dataset}} in it or "
                               "give one path per dataset")
        if kind == "command":
            definition["command"] = command_argv(definition["command"])
        resolved[name] = definition
    _check_rising_levels(resolved, datasets)
    return resolved


def _check_per_dataset(value, datasets, key: str) -> None:
    if not isinstance(value, dict):
        return
    unknown = sorted(set(value) - set(datasets))
    if unknown:
        raise VariantError(f"{key}.{unknown[0]}: not a dataset of this study ({', '.join(sorted(datasets))})")
    missing = sorted(set(datasets) - set(value))
    if missing:
        raise VariantError(f"{key}: no value for dataset {missing[0]} (a per-dataset mapping names every dataset)")


def _check_rising_levels(resolved: dict[str, dict], datasets) -> None:
    """The seed's summary levels are named by rising strength: their targets must rise, per dataset."""
    levels = [v for v in SUMMARY_LEVELS if v in resolved and resolved[v]["kind"] == "generate"]
    for dataset in sorted(datasets):
        targets = [(v, per_dataset(resolved[v]["target_trr"], dataset)) for v in levels]
        for (a, ta), (b, tb) in zip(targets, targets[1:]):
            if tb <= ta:
                raise VariantError(f"config compression.variants.{b}.target_trr: {tb:g} for {dataset} does not rise "
                                   f"above {a}'s {ta:g} (the levels are named by rising strength)")


def per_dataset(value, dataset: str):
    """A per-dataset value for one dataset."""
    return value[dataset] if isinstance(value, dict) else value


def command_argv(command) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def settings_for(definition: dict, dataset: str, shared: dict | None = None) -> dict:
    """A variant's definition for one dataset: per-dataset values resolved; `path` with {dataset} filled; the
    `shared` compression settings (max_tokens_slack, ...) beneath, a key the variant leaves null taking them."""
    own = {k: (per_dataset(v, dataset) if k in PER_DATASET else v) for k, v in definition.items()}
    settings = {**(shared or {}), **{k: v for k, v in own.items() if not (v is None and k in (shared or {}))}}
    if isinstance(settings.get("path"), str):
        settings["path"] = settings["path"].replace("{dataset}", dataset)
    return settings


def compressor_kind(definition: dict) -> str:
    """none (no model writes it), base, endpoint, or model (another local directory or hub id)."""
    if definition["kind"] != "generate":
        return "none"
    compressor = definition["compressor"]
    return "base" if compressor == "base" else "endpoint" if compressor.startswith(ENDPOINT) else "model"


def runs_a_model(definition: dict) -> bool:
    """Does a local model write this variant (a GPU job), rather than a CPU job?"""
    return compressor_kind(definition) in ("base", "model")


def order_by_trr(conditions, trr: dict | None = None) -> list[str]:
    """The baseline, then the variants by measured mean TRR (`trr`: variant -> TRR; rewrites, negative, before
    original_text); without one, the seed study's order, then by name. Tables and plots read in this order."""
    seeds, trr = [BASELINE, *VARIANTS], trr or {}

    def key(condition):
        rate = trr.get(condition)
        known = condition != BASELINE and rate is not None and rate == rate
        seed = seeds.index(condition) if condition in seeds else len(seeds)
        return (condition != BASELINE, float(rate) if known else 0.0, seed, condition)

    return sorted(set(conditions), key=key)


def piece_size(definition: dict, compression: dict, name: str = "<name>") -> tuple[int, str]:
    """(tokens, config key) of generate variant `name`'s longest piece: its own max_input_tokens (a rewrite's),
    else compression.max_input_tokens."""
    own = definition.get("max_input_tokens")
    return (own, f"compression.variants.{name}.max_input_tokens") if own else \
        (compression["max_input_tokens"], "compression.max_input_tokens")


def target_of(definition: dict, dataset: str) -> float | None:
    """The variant's target TRR for `dataset` (original: 0; none set: None)."""
    if definition["kind"] == "original":
        return 0.0
    value = definition.get("target_trr")
    return None if value is None else float(per_dataset(value, dataset))
