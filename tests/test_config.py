"""The config schema is the single description of every key; config.yaml must agree with it."""

import copy

import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO

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


schema_root = load(SCHEMA)


def test_every_key_has_a_description():
    missing = [p for p, sub in described(schema_root) if not sub.get("description")]
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


def test_validation_rejects_unknown_keys_and_bad_values():
    config = load(REPO / "config.yaml")
    config["train"]["rnak"] = 4
    with pytest.raises(Exception, match="rnak"):
        validate(config, str(SCHEMA))
    config = load(REPO / "config.yaml")
    config["compression"]["levels"]["summ_l3_medium"]["target_trr"] = 120
    with pytest.raises(Exception, match="120"):
        validate(config, str(SCHEMA))
