"""Which adapters a config asks for, and how they are grouped for evaluation.

A run is one thing that is trained (or `baseline`: nothing trained). Its
output path depends only on what is trained (dataset, condition, rank, items,
seed), so a run that several experiments share is trained and evaluated once.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import BASELINE, VARIANTS


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


def experiment_runs(config: dict, dataset: str) -> list[tuple[str, Run]]:
    """(experiment, run) pairs for one dataset, in a stable order."""
    train = config["train"]
    seeds = train.get("seeds", [0])
    experiments = config.get("experiments", {})
    pairs: list[tuple[str, Run]] = []
    compression = experiments.get("compression")
    if _enabled(compression, dataset):
        pairs.append(("compression", Run(dataset, BASELINE)))
        for variant in compression.get("variants") or config["compression"]["variants"]:
            for seed in seeds:
                pairs.append(("compression", Run(dataset, variant, train["rank"], None, seed)))
    return pairs


def runs(config: dict, dataset: str) -> list[Run]:
    """Unique runs of a dataset, baseline first, then by condition order, rank, items, seed."""
    order = {name: i for i, name in enumerate((BASELINE, *VARIANTS))}
    unique = {run for _, run in experiment_runs(config, dataset)}
    return sorted(unique, key=lambda r: (order.get(r.condition, 99), r.condition, r.rank,
                                         -1 if r.items is None else r.items, r.seed))


def eval_chunks(config: dict, dataset: str) -> list[list[Run]]:
    """Runs grouped into chunks evaluated by one engine start each."""
    size = int(config["evaluate"]["adapters_per_engine"])
    all_runs = runs(config, dataset)
    return [all_runs[i:i + size] for i in range(0, len(all_runs), size)]


def trained_runs(config: dict) -> list[Run]:
    return [r for d in config["datasets"] for r in runs(config, d) if not r.is_baseline]
