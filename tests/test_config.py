"""The config schema is the one source of defaults, and a config mistake fails before any compute."""

import re

import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO

from lorapress.config import (ConfigError, check_moved_keys, check_schema, check_semantics, given_variants,
                              normalise_variants, resolve)
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


def checked(config: dict) -> dict:
    """What workflow/rules/common.smk does with a config before any job."""
    check_moved_keys(config)
    check_schema(config, SCHEMA)
    given = given_variants(config)
    validate(config, str(SCHEMA))
    normalise_variants(config, given, SCHEMA)
    check_semantics(config)
    return config


def test_config_yaml_equals_the_schema_defaults():
    # Every value, the seven seed variants' prompts included, must be what an empty config becomes, bar the
    # deliberate departures: a study file read alone (--configfile) gets exactly config.yaml's defaults.
    config, empty = checked(load(REPO / "config.yaml")), checked({})
    defaults, ours = dict(leaves(empty)), dict(leaves(config))
    differing = {p for p in defaults.keys() | ours.keys() if defaults.get(p, "<absent>") != ours.get(p, "<absent>")}
    assert differing == DELIBERATE


def full_config():
    return checked(load(REPO / "config.yaml"))


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["train"].update(rnak=4), "config train: Additional properties are not allowed ('rnak' was unexpected)"),
    (lambda c: c["aggregate"].update(metrics=["accuracy"]), "config aggregate.metrics.0: 'accuracy' is not one of"),
    (lambda c: c["experiments"]["rank_items"].update(ranks=[4]), "config experiments.rank_items.ranks: [4] is too short"),
    (lambda c: c["experiments"]["capacity"].update(items=[8]), "config experiments.capacity.items: [8] is too short"),
    (lambda c: c["compression"]["variants"]["summ_l3_medium"].update(prompt="Summarise it."),
     "config compression.variants.summ_l3_medium.prompt: 'Summarise it.' does not match"),
    (lambda c: c["compression"]["variants"]["summ_l3_medium"].update(target_trr=120),
     "config compression.variants.summ_l3_medium.target_trr: 120 is greater than the maximum of 99.9"),
    (lambda c: c["compression"]["variants"].update(mine={"kind": "summarise"}),
     "config compression.variants.mine.kind: 'summarise' is not one of"),
    (lambda c: c["compression"]["variants"].update(baseline={"kind": "original"}),
     "config compression.variants: 'baseline' should not be valid"),
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
    (lambda c: c["compression"].update(levels={}),
     "config compression.levels: moved to compression.variants.<level> (a variant's definition: kind, target_trr, "
     "prompt, ...; see the schema)"),
    (lambda c: c["compression"].update(variants=["original_text", "textrank"]),
     "config compression.variants: textrank is not a seed variant (original_text, summ_l1_slight, summ_l2_light, "
     "summ_l3_medium, summ_l4_heavy, summ_l5_extreme, ext); define it: compression.variants.textrank: {kind: ...}"),
    (lambda c: c["compression"]["variants"].update(mine={"target_trr": 40}),
     "config compression.variants.mine.kind: missing (one of original, generate, extract, command, file); only a "
     "seed variant's name may leave it out"),
    (lambda c: c["compression"]["variants"].update(mine={"kind": "generate", "target_trr": 40}),
     "config compression.variants.mine.prompt: required for a generate variant"),
    (lambda c: c["compression"]["variants"].update(mine={"kind": "extract", "target_trr": 40, "prompt": "{text}"}),
     "config compression.variants.mine.prompt: not a key of a extract variant (its keys: description, kind, "
     "method, target_trr, tolerance)"),
    (lambda c: c["compression"]["variants"]["summ_l2_light"].update(target_trr={"wiki": 50}),
     "config compression.variants.summ_l2_light.target_trr: no value for dataset longmemeval (a per-dataset "
     "mapping names every dataset)"),
    (lambda c: c["compression"]["variants"]["summ_l2_light"].update(target_trr={"wiki": 50, "lme": 90,
                                                                               "longmemeval": 60}),
     "config compression.variants.summ_l2_light.target_trr.lme: not a dataset of this study (longmemeval, wiki)"),
    # the example: l2 at 90 and l4 at 75 pass today although the levels are named by rising strength
    (lambda c: c["compression"]["variants"]["summ_l2_light"].update(target_trr=90),
     "config compression.variants.summ_l3_medium.target_trr: 65 for longmemeval does not rise above "
     "summ_l2_light's 90 (the levels are named by rising strength)"),
    (lambda c: c["compression"]["variants"].update(mine={"kind": "generate", "prompt": "{text}", "target_trr": 40,
                                                         "compressor": "openai:gpt-4o-mini"}),
     "config compression.variants.mine.base_url: required when compressor is openai:gpt-4o-mini"),
    (lambda c: c["compression"]["variants"].update(mine={"kind": "file", "path": "mine.jsonl"}),
     "config compression.variants.mine.path: one file for 2 datasets; put {dataset} in it or give one path per "
     "dataset"),
    (lambda c: c["compression"].update(shards={"nope": 2}), "config compression.shards: unknown datasets ['nope']"),
    (lambda c: c["experiments"]["capacity"].update(datasets=["wikki"]),
     "config experiments.capacity.datasets: unknown datasets ['wikki']"),
    # the paper's old context: l1's 1,024-token pieces, prompt and 932-token cap need 2,084 > 2,048
    (lambda c: c["model"].update(max_model_len=2048),
     "config model.max_model_len: 2048 tokens cannot hold summ_l1_slight's longest piece for longmemeval "
     "(compression.max_input_tokens 1024), its prompt and its reply cap (2084 tokens in all); raise "
     "model.max_model_len or lower compression.max_input_tokens"),
    (lambda c: [c["experiments"][e].update(datasets=["wiki"]) for e in c["experiments"]],
     "config datasets.longmemeval: no experiment evaluates it (every experiments.*.datasets leaves it out); "
     "remove it from datasets or add it to an experiment"),
])
def test_what_the_schema_cannot_say_fails_before_compute(edit, message):
    config = load(REPO / "config.yaml")
    edit(config)
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        checked(config)


def test_variants_are_data_with_the_seeds_as_defaults():
    seeds = full_config()["compression"]["variants"]
    assert list(seeds) == ["original_text", "summ_l1_slight", "summ_l2_light", "summ_l3_medium", "summ_l4_heavy",
                           "summ_l5_extreme", "ext"]
    # a list of seed names is those seeds' definitions
    no_grid = {e: {"enabled": False} for e in ("rank_compression", "capacity", "rank_items")}
    listed = checked({"compression": {"variants": ["original_text", "summ_l5_extreme"]},
                      "experiments": no_grid})["compression"]["variants"]
    assert listed == {k: seeds[k] for k in ("original_text", "summ_l5_extreme")}
    # a seed named with one override keeps its prompts (the schema's defaults of absent keys must not replace them)
    config = checked({"compression": {"variants": {"summ_l1_slight": {"target_trr": {"wiki": 35.2, "longmemeval": 93.8}},
                                                   "mine": {"kind": "command", "command": "python3 my.py --rate 0.3"}}},
                      "experiments": no_grid})
    l1 = config["compression"]["variants"]["summ_l1_slight"]
    assert l1["prompt"] == seeds["summ_l1_slight"]["prompt"] and l1["retry_prompt"] == seeds["summ_l1_slight"]["retry_prompt"]
    assert l1["target_trr"] == {"wiki": 35.2, "longmemeval": 93.8} and l1["compressor"] == "base"
    assert l1["max_input_tokens"] is None  # compression.max_input_tokens applies
    mine = config["compression"]["variants"]["mine"]
    assert mine == {"kind": "command", "description": "", "command": ["python3", "my.py", "--rate", "0.3"],
                    "tolerance": 15}
    # a rewrite: a negative target (an expansion) is allowed
    checked({"compression": {"variants": {"original_text": {}, "paraphrase": {
        "kind": "generate", "target_trr": -100, "prompt": "{text}\n\nRestate the text above twice.",
        "max_input_tokens": 512}}},
             "experiments": no_grid})


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


def test_a_tier_larger_than_its_dataset_is_one_line():
    from lorapress.config import oversized_tiers
    from lorapress.prepare import load_dataset_items

    config = full_config()
    config["experiments"]["capacity"]["items"] = [3, 50]  # the example: "50" trained on 5 items, plotted at 50
    wiki = config["datasets"]["wiki"]
    n = load_dataset_items({**wiki, "path": str(REPO / wiki["path"]), "limit": 5})
    assert n == 5
    assert oversized_tiers(config, "wiki", n) == ("config experiments.capacity.items: 50 is more than the 5 items of "
                                                  "dataset wiki (data/wiki/sample.jsonl); use at most 5, or `all`")
    assert oversized_tiers(config, "longmemeval", 5) is None  # capacity runs on wiki only in config.yaml
    config["experiments"]["capacity"]["items"] = [3, "all"]
    config["experiments"]["rank_items"]["items"] = [2, "all"]
    assert oversized_tiers(config, "wiki", n) is None
