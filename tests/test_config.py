"""The config schema is the one source of defaults, and a config mistake fails before any compute."""

import copy
import re

import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO

from lorapress.config import ConfigError, check_schema, check_semantics, resolve
from lorapress.hardware import Hardware

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def load(path):
    return yaml.safe_load(path.read_text())


def described(schema: dict, path: str = ""):
    """Yield (path, subschema) for every property in the schema."""
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from described(sub, f"{path}.{name}")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from described(extra, f"{path}.*")


def test_every_key_has_a_description():
    missing = [p for p, sub in described(load(SCHEMA)) if not sub.get("description")]
    assert missing == []


# config.yaml departs from the generic defaults only here, to keep the embedded run short.
DELIBERATE = {"experiments.capacity.datasets", "experiments.rank_items.datasets",
              "experiments.rank_compression.datasets"}


def leaves(tree, path=""):
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from leaves(value, f"{path}.{key}" if path else key)
    else:
        yield path, tree


def test_config_yaml_equals_the_schema_defaults():
    # Levels have no default of their own (their prompts live in config.yaml); every other
    # value must be what an empty config becomes, bar the deliberate departures.
    config = load(REPO / "config.yaml")
    empty = {"compression": {"levels": copy.deepcopy(config["compression"]["levels"])}}
    validate(empty, str(SCHEMA))
    validate(config, str(SCHEMA))  # fills the defaults config.yaml leaves out (e.g. dataset options)
    defaults, ours = dict(leaves(empty)), dict(leaves(config))
    differing = {p for p in defaults.keys() | ours.keys() if defaults.get(p, "<absent>") != ours.get(p, "<absent>")}
    assert differing == DELIBERATE


def full_config():
    config = load(REPO / "config.yaml")
    validate(config, str(SCHEMA))
    return config


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["train"].update(rnak=4), "config train: Additional properties are not allowed ('rnak' was unexpected)"),
    (lambda c: c["aggregate"].update(metrics=["accuracy"]), "config aggregate.metrics.0: 'accuracy' is not one of"),
    (lambda c: c["experiments"]["rank_items"].update(ranks=[4]), "config experiments.rank_items.ranks: [4] is too short"),
    (lambda c: c["experiments"]["capacity"].update(items=[8]), "config experiments.capacity.items: [8] is too short"),
    (lambda c: c["compression"]["levels"]["summ_l3_medium"].update(prompt="Summarise it."),
     "config compression.levels.summ_l3_medium.prompt: 'Summarise it.' does not match"),
    (lambda c: c["compression"]["levels"]["summ_l3_medium"].update(target_trr=120),
     "config compression.levels.summ_l3_medium.target_trr: 120 is greater than the maximum of 100"),
    (lambda c: c["model"].update(dtype="fp8"), "config model.dtype: 'fp8' is not one of"),
])
def test_schema_mistakes_are_one_line_naming_the_key(edit, message):
    config = load(REPO / "config.yaml")
    edit(config)
    with pytest.raises(ConfigError) as caught:
        check_schema(config, SCHEMA)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["judge"].update(model="openai:gpt-judge"), "config judge.base_url: required when judge.model is openai:NAME"),
    (lambda c: c["compression"].update(variants=["original_text", "summ_l1_slight"]),
     "config experiments.rank_compression.variants: ['summ_l3_medium', 'summ_l5_extreme'] not in compression.variants"),
    (lambda c: c["compression"]["levels"].pop("summ_l2_light"),
     "config compression.levels.summ_l2_light: missing, but summ_l2_light is in compression.variants"),
    (lambda c: c["compression"].update(shards={"nope": 2}), "config compression.shards: unknown datasets ['nope']"),
    (lambda c: c["experiments"]["capacity"].update(datasets=["wikki"]),
     "config experiments.capacity.datasets: unknown datasets ['wikki']"),
    # the paper's old context: l1's 1,024-token pieces, prompt and 932-token cap need 2,084 > 2,048
    (lambda c: c["model"].update(max_model_len=2048),
     "config model.max_model_len: 2048 tokens cannot hold summ_l1_slight's longest piece "
     "(compression.max_input_tokens 1024), its prompt and its reply cap (2084 tokens in all); raise "
     "model.max_model_len or lower compression.max_input_tokens"),
    (lambda c: [c["experiments"][e].update(datasets=["wiki"]) for e in c["experiments"]],
     "config datasets.longmemeval: no experiment evaluates it (every experiments.*.datasets leaves it out); "
     "remove it from datasets or add it to an experiment"),
])
def test_what_the_schema_cannot_say_fails_before_compute(edit, message):
    config = full_config()
    edit(config)
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        check_semantics(config)


def test_auto_resolves_per_machine_and_explicit_values_win():
    config = full_config()
    avx2 = Hardware(cpu_flags=("avx2",))
    bf16 = Hardware(cpu_flags=("avx2", "avx512_bf16"))
    assert resolve(config, avx2)["dtype"] == "float32" and resolve(config, avx2)["backend"] == "transformers"
    assert resolve(config, avx2)["compression_backend"] == resolve(config, bf16)["compression_backend"] == "vllm"
    assert resolve(config, bf16)["dtype"] == resolve(config, bf16)["train_dtype"] == "bfloat16"
    config["train"]["compute_dtype"] = "float32"
    assert resolve(config, bf16)["train_dtype"] == "float32"
    config["resources"]["gpu"] = 1  # GPU jobs planned on a machine that cannot see the GPU
    with pytest.raises(ConfigError, match="config model.dtype: auto needs the GPU"):
        resolve(config, avx2)
    config["model"]["dtype"] = "bfloat16"
    assert resolve(config, avx2) | {"hardware": None} == {
        "dtype": "bfloat16", "dtype_reason": "set explicitly", "train_dtype": "float32", "backend": "vllm",
        "compression_backend": "vllm", "hardware": None}
