"""Which adapters a config asks for, and how they are grouped for evaluation.

A run is one thing that is trained (or `baseline`: nothing trained). Its
output path depends only on what is trained (dataset, condition, rank, items,
seed), so a run that several experiments share is trained and evaluated once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import BASELINE, ORIGINAL


@dataclass(frozen=True, order=True)
class Run:
    dataset: str
    condition: str
    rank: int = 0
    items: int | None = None  # first N items; None = all
    seed: int = 0

    @property
    def is_baseline(self) -> bool:
        return self.condition == BASELINE

    @property
    def tag(self) -> str:
        """The run's name inside its condition: `r8_nall_s0`."""
        return f"r{self.rank}_n{'all' if self.items is None else self.items}_s{self.seed}"

    @property
    def run_id(self) -> str:
        return BASELINE if self.is_baseline else f"{self.condition}/{self.tag}"

    @property
    def adapter_dir(self) -> str | None:
        return None if self.is_baseline else f"results/adapters/{self.dataset}/{self.condition}/{self.tag}"

    def fields(self) -> dict:
        """Columns of the long-format score table (baseline: rank 0, items 0)."""
        return {
            "dataset": self.dataset,
            "condition": self.condition,
            "rank": self.rank,
            "items": 0 if self.is_baseline else (self.items if self.items is not None else "all"),
            "seed": self.seed,
        }

    @classmethod
    def from_id(cls, dataset: str, run_id: str) -> "Run":
        if run_id == BASELINE:
            return cls(dataset, BASELINE)
        condition, tag = run_id.split("/")
        rank, items, seed = tag.split("_")
        n = items[1:]
        return cls(dataset, condition, int(rank[1:]), None if n == "all" else int(n), int(seed[1:]))


def _enabled(experiment: dict | None, dataset: str) -> bool:
    if not experiment or not experiment.get("enabled", True):
        return False
    datasets = experiment.get("datasets")
    return datasets is None or dataset in datasets


EXPERIMENTS = ("compression", "capacity", "rank_items", "rank_compression")


def experiment_runs(config: dict, dataset: str) -> list[tuple[str, Run]]:
    """(experiment, run) pairs for one dataset, in a stable order; every experiment has the baseline.

    - compression: every variant at train.rank with all items;
    - capacity: original_text on the first N items, for each N in `items` ("all": every item, which is
      the compression experiment's run at the same rank, trained once);
    - rank_items: original_text for each rank in `ranks` x each N in `items` (likewise);
    - rank_compression: each variant in `variants` for each rank in `ranks`, all items.
    Each trained run is repeated per seed in train.seeds.
    """
    train = config["train"]
    seeds, rank = train.get("seeds", [0]), train["rank"]
    experiments = config.get("experiments", {})
    pairs: list[tuple[str, Run]] = []

    def add(name: str, condition: str, r: int, items: int | str | None) -> None:
        n = None if items in (None, "all") else int(items)
        pairs.extend((name, Run(dataset, condition, r, n, seed)) for seed in seeds)

    for name in EXPERIMENTS:
        spec = experiments.get(name)
        if not _enabled(spec, dataset):
            continue
        pairs.append((name, Run(dataset, BASELINE)))
        if name == "compression":
            for variant in spec.get("variants") or config["compression"]["variants"]:
                add(name, variant, rank, None)
        elif name == "capacity":
            for n in spec["items"]:
                add(name, ORIGINAL, rank, n)
        elif name == "rank_items":
            for r in spec["ranks"]:
                for n in spec["items"]:
                    add(name, ORIGINAL, r, n)
        else:
            for r in spec["ranks"]:
                for variant in spec["variants"]:
                    add(name, variant, r, None)
    return pairs


def runs(config: dict, dataset: str) -> list[Run]:
    """Unique runs of a dataset, baseline first, then by the config's variant order, rank, items, seed."""
    order = {name: i for i, name in enumerate((BASELINE, *config["compression"]["variants"]))}
    unique = {run for _, run in experiment_runs(config, dataset)}
    return sorted(unique, key=lambda r: (order.get(r.condition, 99), r.condition, r.rank,
                                         -1 if r.items is None else r.items, r.seed))


def run_bits(run: Run) -> str:
    """The run's stable hash as a bit string: where it falls does not depend on the other runs."""
    digest = hashlib.sha256(run.run_id.encode()).digest()
    return "".join(f"{byte:08b}" for byte in digest)


def eval_chunks(config: dict, dataset: str) -> dict[str, list[Run]]:
    """Runs grouped into chunks, each evaluated by one engine start; chunk name -> runs.

    A chunk is a prefix of the runs' hash bits ("h" + bits): the root holds every run; a prefix
    holding more than `evaluate.adapters_per_engine` runs is split in two by the next bit. A
    chunk's runs therefore depend only on runs that share its prefix: adding or removing a run
    changes only the chunk it falls in (which may split in two, or merge with its sibling), and
    every other chunk, with its cached answers, stays as it is.
    """
    size = int(config["evaluate"]["adapters_per_engine"])
    chunks: dict[str, list[Run]] = {}

    def split(prefix: str, members: list[Run]) -> None:  # members stay in `runs` order
        if len(members) <= size or len(prefix) >= 256:
            if members:
                chunks[f"h{prefix}"] = members
            return
        for bit in "01":
            split(prefix + bit, [r for r in members if run_bits(r)[len(prefix)] == bit])

    split("", runs(config, dataset))
    return dict(sorted(chunks.items()))
