"""Stage `aggregate`: answers and verdicts -> per-question scores -> the study's tables and answers.

Layers, each usable on its own:
1. `question_scores` / `run_scores`: per-question records -> the per-question table and the
   long-format `scores.csv` (dataset, experiment, condition, rank, items, seed, metric, value, n);
2. `Study`: a dataset's cells. A cell is a (condition, rank, items) of one experiment, its
   replicates the experiment's runs of it (its seeds). Its score carries a two-stage
   interval with t tails at the seed level and paired questions (see `uncertainty`); a
   difference between cells is paired on the questions both have, estimate and interval alike,
   with raw and Holm-adjusted significance within its table, the smallest difference it could
   detect (`_mdd`) and, where a "no difference" is in question, an equivalence test (`_equivalent`);
3. the tables (compression, capacity, rank x items, rank x compression), one row per cell and
   metric (the compression table led by each variant's compressor, TRR and fact survival), and
   `summary.json` (the run's scale, the headline metric, best condition, capacity peak and knee
   with their intervals, the fitted rank recommendation, inert adapters, self-checks, judge
   controls, claims).

`lorapress aggregate` runs on this pipeline's outputs, or on any long-format scores file
(e.g. another study's): each experiment's table is built from that experiment's own rows,
and rows repeating a setting within an experiment are its replicates.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import BASELINE, EXTRACTIVE, ORIGINAL, SUMMARY_LEVELS
from .diagnostics import judge_controls, run_diagnostics
from .experiments import Run
from .judge import LME_TYPES
from .io import StageError, atomic_path, parse_json_arg, read_json, read_jsonl, write_json
from .metrics import is_judge_metric
from .variants import order_by_trr
from .uncertainty import Bootstrap, argmax_interval, difference, equivalent, estimate, holm, mdd, replicate_means

log = logging.getLogger(__name__)

OVERLAP_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "exact_match", "f1")
LOGLIK_METRICS = ("answer_loglik", "answer_margin", "answer_preferred")
MC_METRICS = ("mc_acc", "mc_acc_norm")  # lm-evaluation-harness's acc and acc_norm over the reference and 3 distractors
JUDGE_METRICS = ("judge_score", "judge_expected", "judge_accuracy", "judge_p_yes")
CONTROL_METRICS = {"f1": "control_f1", "answer_loglik": "control_loglik"}
KNOWN_METRICS = (*OVERLAP_METRICS, *LOGLIK_METRICS, *MC_METRICS, *JUDGE_METRICS, "truncated",
                 *CONTROL_METRICS.values())
# Names that stand for the judge's metric of each dataset: the rubric for wiki, the verdict elsewhere.
ALIASES = {"judge": ("judge_score", "judge_accuracy"), "judge_weighted": ("judge_expected", "judge_p_yes")}
METRIC_NAMES = (*KNOWN_METRICS, *ALIASES)
UNPARSED = "judge_unparsed_pct"  # per question 0/100: the verdict had no readable reply
SCORE_COLUMNS = ["dataset", "experiment", "condition", "rank", "items", "seed", "metric", "value", "n"]
QUESTION_KEYS = ["dataset", "condition", "rank", "items", "seed", "question_set", "question_id", "question_type",
                 "abstention"]


# ---------------------------------------------------------------- 1. scores
def question_scores(answers: pd.DataFrame, verdicts: pd.DataFrame | None, dataset: str) -> pd.DataFrame:
    """Per-question scores of every run, long format (judge verdicts and booleans as 0-100)."""
    records = answers.copy()
    records["answer_margin"] = records["answer_loglik"] - records["distractor_loglik"]
    records["answer_preferred"] = 100.0 * records["distractors_beaten"].astype(float)
    for metric in (m for m in MC_METRICS if m in records):  # answers written before these scores lack them
        records[metric] = 100.0 * records[metric].astype(float)  # won 100, lost 0, not scored (None) NaN
    records["truncated"] = 100.0 * records["truncated"].astype(float)
    if verdicts is not None and len(verdicts):
        v = judge_values(verdicts)
        keep = ["run_id", "question_id"] + [m for m in (*JUDGE_METRICS, UNPARSED) if m in v]
        records = records.merge(v[keep], on=["run_id", "question_id"], how="left")
    metrics = [m for m in (*OVERLAP_METRICS, *LOGLIK_METRICS, *MC_METRICS, *JUDGE_METRICS, UNPARSED, "truncated")
               if m in records]
    main = records[records["question_set"] == "dataset"]
    ids = ["run_id", "question_set", "question_id", "question_type", "abstention"]
    frames = [main.melt(id_vars=ids, value_vars=metrics, var_name="metric")]
    control = records[records["question_set"] == "control"]
    if len(control):
        control = control.rename(columns={"f1": "control_f1", "answer_loglik": "control_loglik"})
        frames.append(control.melt(id_vars=ids, value_vars=list(CONTROL_METRICS.values()), var_name="metric"))
    table = pd.concat(frames, ignore_index=True)
    table["value"] = table["value"].astype(float)
    fields = pd.DataFrame([Run.from_id(dataset, r).fields() | {"run_id": r} for r in table["run_id"].unique()])
    return table.merge(fields, on="run_id")[[*QUESTION_KEYS, "run_id", "metric", "value"]]


def judge_values(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Verdict records -> per-question judge values on 0-100, as LongMemEval counts them.

    A yes/no verdict without a readable reply counts as wrong (0), as the official script counts every reply
    without "yes"; `judge_unparsed_pct` (0 or 100 per question) keeps their share visible. A rubric score without
    a reading stays missing (the 1-5 scale has no 'wrong' value) and is counted in the same share. Verdict files
    written before `judge_unparsed` existed: a missing verdict is an unparsed one."""
    v = verdicts.copy()
    verdict = v["judge_correct"] if "judge_correct" in v else v.get("judge_score", pd.Series(np.nan, index=v.index))
    unparsed = verdict.isna()
    if "judge_unparsed" in v:
        unparsed = v["judge_unparsed"].astype(object).where(v["judge_unparsed"].notna(), unparsed).astype(bool)
    if "judge_correct" in v:
        v["judge_accuracy"] = 100 * v["judge_correct"].astype(float).fillna(0.0)
    if "judge_p_yes" in v:
        v["judge_p_yes"] = 100 * v["judge_p_yes"].astype(float)
    v[UNPARSED] = 100.0 * unparsed
    return v


def run_metrics(qs: pd.DataFrame) -> list[tuple[str, float, int]]:
    """(metric, value, n) of one run from its per-question scores; n counts scored questions."""
    rows = []
    has_unparsed = UNPARSED in set(qs["metric"])
    for metric, part in qs.groupby("metric", sort=False):
        values = part["value"]
        rows.append((metric, values.mean(), int(values.notna().sum())))
        if metric in ("judge_score", "judge_accuracy") and not has_unparsed:  # scores without the per-question flag
            rows.append((UNPARSED, 100 * values.isna().mean(), len(values)))
        if metric == "judge_accuracy":
            rows += _longmemeval_accuracies(part)
    return rows


def _longmemeval_accuracies(part: pd.DataFrame) -> list[tuple[str, float, int]]:
    """As LongMemEval reports (print_qa_metrics.py): accuracy per type over every judged question, `_abs` ones
    within their type; task-averaged = the mean of the six official types' accuracies, not available (NaN, n =
    the types present) when one is missing; abstention accuracy over the abstention questions."""
    judged = part.dropna(subset=["value"])
    by_type = judged.groupby("question_type")["value"].agg(["mean", "count"])
    rows = [(f"judge_accuracy[{t}]", r["mean"], int(r["count"])) for t, r in by_type.iterrows()]
    if len(by_type):
        present = [t for t in LME_TYPES if t in by_type.index]
        task_avg = by_type.loc[list(LME_TYPES), "mean"].mean() if len(present) == len(LME_TYPES) else float("nan")
        rows.append(("judge_task_avg_accuracy", task_avg, len(present)))
    abstention = judged[judged["abstention"].astype(bool)]["value"]
    if len(abstention):
        rows.append(("judge_abstention_accuracy", abstention.mean(), len(abstention)))
    return rows


def task_average_note(question_types) -> dict:
    """Which official types a run has, and whether its task-averaged accuracy is available."""
    present = [t for t in LME_TYPES if t in set(question_types)]
    missing = [t for t in LME_TYPES if t not in present]
    note = ("mean of the six official question types" if not missing else
            f"not available: {', '.join(missing)} missing from this run; present: {', '.join(present) or 'none'}")
    return {"available": not missing, "types_present": present, "types_missing": missing, "note": note}


def judge_identity(metas: list[dict], dataset: str) -> dict | None:
    """The one judge that graded a dataset (from its verdicts' provenance); None when no provenance says."""
    identities = {json.dumps(m["judge"], sort_keys=True) for m in metas if m.get("judge")}
    if len(identities) > 1:
        raise StageError(f"{dataset}: verdicts graded by different judges ({sorted(identities)}); re-judge them")
    return json.loads(identities.pop()) if identities else None


def run_scores(qs: pd.DataFrame, dataset: str, experiments: list[tuple[str, str]]) -> pd.DataFrame:
    """Long-format scores; a run shared by several experiments appears once per experiment."""
    per_run = {run_id: run_metrics(part) for run_id, part in qs.groupby("run_id", sort=False)}
    rows = []
    for experiment, run_id in experiments:
        if run_id not in per_run:
            raise StageError(f"{dataset}: no answers for run {run_id!r} of experiment {experiment!r}")
        fields = Run.from_id(dataset, run_id).fields()
        rows += [{**fields, "experiment": experiment, "metric": m, "value": v, "n": n} for m, v, n in per_run[run_id]]
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def resolve_metric(metric: str, question_types) -> str:
    """`judge` -> judge_score on wiki questions, judge_accuracy elsewhere (likewise `judge_weighted`)."""
    if metric not in ALIASES:
        return metric
    rubric, verdict = ALIASES[metric]
    return rubric if set(question_types) <= {"wiki"} else verdict


# ---------------------------------------------------------------- 2. cells
def items_key(items) -> str:
    """One spelling of an item count: 'all', or the integer ('500', not '500.0')."""
    if items is None or (isinstance(items, float) and math.isnan(items)) or items == "":
        return "0"
    try:
        return str(int(float(items)))
    except (TypeError, ValueError):
        return str(items)


@dataclass(frozen=True)
class Cell:
    condition: str
    rank: int = 0
    items: str = "0"

    @classmethod
    def of(cls, condition: str, rank=0, items="0") -> "Cell":
        if condition == BASELINE:
            return cls(BASELINE)
        return cls(condition, int(float(rank)), items_key(items))


class Study:
    """One dataset's runs: cells per experiment, their per-question values, their uncertainty."""

    def __init__(self, scores: pd.DataFrame, dataset: str, boot: Bootstrap, qs: pd.DataFrame | None = None,
                 n_items: int | None = None, margins: dict | None = None, trr: dict | None = None):
        part = scores[scores["dataset"] == dataset].copy()
        base = part["condition"] == BASELINE  # a baseline's rank and items may be blank (another study's file)
        part["rank"] = pd.to_numeric(part["rank"].where(~base, 0), errors="coerce").fillna(0).astype(int)
        part["items"] = part["items"].astype(object).where(~base, "0").map(items_key)
        self.dataset, self.scores, self.boot, self.n_items = dataset, part, boot, n_items
        self.margins = margins or {}
        self.trr = trr or {}  # variant -> its measured TRR: tables order the variants by it
        self.qs = None
        if qs is not None and len(qs):
            q = qs[qs["dataset"] == dataset].copy()
            q["items"] = q["items"].map(items_key)
            q["rank"] = q["rank"].astype(int)
            self.qs = q
            self._cells = {key: part for key, part in q.groupby(["metric", "condition", "rank", "items"])}
            self._questions = {m: sorted(part["question_id"].unique()) for m, part in q.groupby("metric")}
            self.question_types = sorted(q.loc[q["question_set"] == "dataset", "question_type"].unique())
        else:
            self.question_types = ["wiki"] if dataset == "wiki" else []

    # -- which rows make a cell
    def experiments(self) -> set[str]:
        return set(self.scores["experiment"])

    def rows(self, experiment: str, metric: str) -> pd.DataFrame:
        part = self.scores[(self.scores["experiment"] == experiment) & (self.scores["metric"] == metric)]
        return part

    def replicates(self, experiment: str, cell: Cell, metric: str) -> pd.DataFrame:
        """The experiment's rows of `cell`; the baseline falls back to the dataset's other experiments."""
        def select(part):
            return part[(part["condition"] == cell.condition) & (part["rank"] == cell.rank)
                        & (part["items"] == cell.items)]

        own = select(self.rows(experiment, metric))
        if len(own) or cell.condition != BASELINE:
            return own
        for other in ["compression", *sorted(self.experiments())]:
            found = select(self.rows(other, metric))
            if len(found):
                return found
        return own

    def capacity_tiers(self, metric: str) -> tuple[int, list[tuple[int, str]]]:
        """(rank, [(N, items key)]) of the capacity curve, by N; `all` counts as the dataset's item count
        (left out when that is unknown, e.g. another study's scores file)."""
        part = self.rows("capacity", metric)
        trained = part[part["condition"] == ORIGINAL]
        if trained.empty:
            return 0, []
        ranks = sorted(set(trained["rank"]))
        if len(ranks) > 1:
            raise StageError(f"{self.dataset}/capacity: several ranks {ranks}; a capacity curve has one rank")
        tiers = {(int(i), i) for i in trained["items"] if i.isdigit()}
        if "all" in set(trained["items"]) and self.n_items:
            tiers.add((self.n_items, "all"))
        return ranks[0], sorted(tiers)

    def metric_of(self, metric: str) -> str:
        return resolve_metric(metric, self.question_types)

    def margin(self, metric: str) -> float | None:
        """The equivalence margin of a table metric (config `aggregate.equivalence_margins`, which may name
        it directly or by its alias: `judge` for judge_score and judge_accuracy; a control metric takes its
        main metric's)."""
        control = {v: k for k, v in CONTROL_METRICS.items()}
        for name in (metric, control.get(metric),
                     *(alias for alias, names in ALIASES.items() if metric in names)):
            if name in self.margins:
                return float(self.margins[name])
        return None

    # -- the (seeds, questions) matrix of a cell
    def questions(self, metric: str) -> list[str]:
        return ["run"] if self.qs is None else self._questions.get(metric, [])

    def arm(self, experiment: str, cell: Cell, metric: str, only: set[str] | None = None) -> np.ndarray:
        """(replicates, questions) values of `cell`; NaN outside `only` (a question subset)."""
        reps = self.replicates(experiment, cell, metric)
        if self.qs is None:  # run-level scores only: each replicate is one value
            return reps["value"].to_numpy(dtype=float)[:, None]
        q = self._cells.get((metric, cell.condition, cell.rank, cell.items), self.qs.iloc[:0])
        q = q[q["seed"].isin(reps["seed"])]
        columns = self.questions(metric)
        table = q.pivot_table(index="seed", columns="question_id", values="value", aggfunc="first",
                              dropna=False).reindex(columns=columns)
        matrix = table.to_numpy(dtype=float)
        if only is not None:
            matrix[:, [c not in only for c in columns]] = np.nan
        return matrix

    # -- numbers with their uncertainty
    def score(self, experiment: str, cell: Cell, metric: str, only: set[str] | None = None) -> dict:
        arm = self.arm(experiment, cell, metric, only)
        values = self.replicates(experiment, cell, metric)["value"].astype(float)
        if arm.size == 0:
            out = {"score": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_questions": 0,
                   "n_seeds": 0, "question_se": float("nan")}
        else:
            out = estimate(arm, self.boot, (self.dataset, experiment, cell, metric, _key(only)))
            if self.qs is None and arm.shape[0] == 1:  # one value, no questions: nothing to resample
                out["ci_low"] = out["ci_high"] = float("nan")
        out["seed_sd"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        if self.qs is None:  # run-level scores: no questions to spread
            out["question_se"] = float("nan")
        return out

    def diff(self, experiment: str, a: Cell, b: Cell, metric: str, only: set[str] | None = None) -> dict:
        """a − b. With run-level scores only, the single 'question' column holds each replicate's value and
        only replicates are resampled; with one replicate a side there is no interval."""
        arm_a, arm_b = self.arm(experiment, a, metric, only), self.arm(experiment, b, metric, only)
        nan = float("nan")
        if arm_a.size == 0 or arm_b.size == 0:
            return {"diff": nan, "pct": nan, "ci_low": nan, "ci_high": nan, "p": nan, "n_questions": 0,
                    "se": nan, "df": nan, "tost_low": nan, "tost_high": nan, "margin": self.margin(metric)}
        out = difference(arm_a, arm_b, self.boot, (self.dataset, experiment, a, b, metric, _key(only)))
        if self.qs is None:
            out["n_questions"] = 0
            if arm_a.shape[0] < 2 and arm_b.shape[0] < 2:
                out.update(ci_low=nan, ci_high=nan, p=nan, se=nan, df=nan, tost_low=nan, tost_high=nan)
        out["margin"] = self.margin(metric)
        return out


def _key(only):
    return None if only is None else tuple(sorted(only))


# ---------------------------------------------------------------- 3. tables
def _score_columns(score: dict) -> dict:
    """`seed_sd`: the sd of the cell's run scores (how far one seed's adapter lands from another's);
    `question_se`: the sd of its per-question seed-averaged scores / sqrt(Q) (how far other questions
    would move the score)."""
    return {k: score.get(k, float("nan")) for k in ("score", "ci_low", "ci_high", "seed_sd", "question_se", "n_seeds",
                                                    "n_questions")}


def _diff_columns(prefix: str, d: dict, pct: bool = True) -> dict:
    """A comparison's columns. `_se`/`_df` feed `_mdd` (set per family in `_holm_columns`); `_equivalent`:
    TOST within ±margin (the (1 − 2α) interval inside it; None without a margin or an interval)."""
    columns = {f"{prefix}_diff": d["diff"], f"{prefix}_ci_low": d["ci_low"], f"{prefix}_ci_high": d["ci_high"]}
    if pct:
        columns[f"{prefix}_pct"] = d["pct"]
    columns.update({f"{prefix}_p": d["p"], f"{prefix}_sig": None if d["p"] != d["p"] else bool(d["p"] < ALPHA)})
    no_comparison = d["p"] != d["p"]
    margin = d.get("margin")
    columns.update({f"{prefix}_se": d.get("se", float("nan")), f"{prefix}_df": d.get("df", float("nan")),
                    f"{prefix}_margin": margin if margin is not None else float("nan"),
                    f"{prefix}_equivalent": None if no_comparison else equivalent(
                        d.get("tost_low", float("nan")), d.get("tost_high", float("nan")), margin)})
    return columns


ALPHA = 0.05  # set from the bootstrap's confidence level by `aggregate`


def _holm_columns(table: pd.DataFrame, prefixes: list[str], family: list[str]) -> pd.DataFrame:
    """`{prefix}_sig_holm`: Holm-adjusted flags within each family (a metric's column of comparisons);
    `{prefix}_mdd`: the smallest difference each comparison detects with 80% power at the family's
    level after Holm, taken at Holm's first (strictest) step, α/m for m comparisons."""
    for prefix in prefixes:
        column = f"{prefix}_p"
        if column not in table:
            continue
        flags = pd.Series([None] * len(table), index=table.index, dtype=object)
        smallest = pd.Series(float("nan"), index=table.index)
        for _, part in table.groupby(family, sort=False):
            for index, flag in zip(part.index, holm(part[column].tolist(), ALPHA)):
                flags[index] = flag
            m = int(part[column].notna().sum())
            for index, r in part.iterrows():
                if r[column] == r[column]:
                    smallest[index] = mdd(r[f"{prefix}_se"], r[f"{prefix}_df"], ALPHA, m)
        table.insert(table.columns.get_loc(f"{prefix}_sig") + 1, f"{prefix}_sig_holm", flags)
        table.insert(table.columns.get_loc(f"{prefix}_sig_holm") + 1, f"{prefix}_mdd", smallest)
    return table


def table_metrics(study: Study, metrics: list[str], control: bool = False) -> list[str]:
    resolved = [study.metric_of(m) for m in metrics]
    if control:
        resolved += [m for m in CONTROL_METRICS.values()]
    # a metric no question of this dataset could score (multiple choice where no question has three
    # distractors: a handful of LongMemEval questions, each of its own type) has no row, rather than a blank one
    present = set(study.scores.loc[study.scores["value"].notna(), "metric"])
    return [m for m in dict.fromkeys(resolved) if m in present]


def _single_setting(rows: pd.DataFrame, what: str) -> Cell:
    settings = rows[["rank", "items"]].drop_duplicates()
    if len(settings) > 1:
        raise StageError(f"{what}: rows of several settings {settings.to_dict('records')}; "
                         "an experiment's cell must be one setting (its rows are replicates)")
    first = rows.iloc[0]
    return Cell.of(first["condition"], first["rank"], first["items"])


def _order(conditions, trr: dict | None = None) -> list[str]:
    """`order_by_trr` of a dataset's `trr_by_variant`."""
    return order_by_trr(conditions, {v: (t or {}).get("trr_mean") for v, t in (trr or {}).items()})


# ---------------------------------------------------------------- what each variant kept
VARIANT_COLUMNS = ("compressor", "trr_mean", "fact_survival", "fact_survival_ci_low", "fact_survival_ci_high")


def compressor(variant: str, meta: dict | None = None, base_model: str | None = None) -> str:
    """Who wrote a variant's text: its provenance's `compressor` once the compress stage records one; until then
    this pipeline's fixed choice (the base model writes the summary levels, TF-IDF picks ext's sentences).
    Without a base model (another study's scores file) that choice is not assumed."""
    meta = (meta or {}).get("settings", meta) or {}  # a .meta.json: the stage's provenance, its record under settings
    if meta.get("compressor") == "base":  # the compress stage names the base model only as "base"
        return f"base model ({base_model})" if base_model else "base model"
    if meta.get("compressor"):
        return str(meta["compressor"])
    if variant == BASELINE:
        return "no training text"
    if variant == ORIGINAL:
        return "none"
    if base_model is None:
        return "not recorded"
    if variant in SUMMARY_LEVELS:
        return f"base model ({base_model})"
    return "TF-IDF extractive" if variant == EXTRACTIVE else "not recorded"


def fact_survival(records: pd.DataFrame, confidence: float) -> dict:
    """% of questions whose reference answer a variant's text still states, with its Wilson interval.

    A share of questions: at 0% or 100% (l5, original_text) a bootstrap interval shrinks to a point, as if a few
    dozen questions proved it exactly; Wilson's does not. Abstention questions have no fact to survive (None)."""
    from statsmodels.stats.proportion import proportion_confint

    survived = records["fact_survived"].dropna().astype(bool)
    nan = float("nan")
    if survived.empty:
        return {"fact_survival": nan, "fact_survival_ci_low": nan, "fact_survival_ci_high": nan}
    share = float(survived.mean())
    low, high = proportion_confint(int(survived.sum()), len(survived), alpha=1 - confidence, method="wilson")
    # Wilson's interval holds the share; at 0% and 100% rounding leaves its bound 1e-16 on the wrong side
    return {"fact_survival": 100 * share, "fact_survival_ci_low": 100 * min(float(low), share),
            "fact_survival_ci_high": 100 * max(float(high), share)}


def variant_profiles(conditions, trr: dict, facts: dict | None = None, metas: dict | None = None,
                     base_model: str | None = None) -> dict[str, dict]:
    """condition -> its compressor, mean TRR and fact survival (NaN where not measured)."""
    nan = float("nan")
    return {c: {"compressor": compressor(c, (metas or {}).get(c), base_model),
                "trr_mean": trr.get(c, {}).get("trr_mean", nan),
                **(facts or {}).get(c, dict.fromkeys(VARIANT_COLUMNS[2:], nan))} for c in conditions}


def lead_with_variants(table: pd.DataFrame, profiles: dict[str, dict]) -> pd.DataFrame:
    """The columns right after `condition`: each variant's compressor, TRR and fact survival, so that a reader
    sees at once whether a score follows what the compressor kept or what the adapter learned."""
    if table.empty:
        return table
    lead = pd.DataFrame([{k: profiles.get(c, {}).get(k, float("nan")) for k in VARIANT_COLUMNS}
                         for c in table["condition"]], index=table.index)
    at = table.columns.get_loc("condition") + 1
    return pd.concat([table.iloc[:, :at], lead, table.iloc[:, at:]], axis=1)


def compression_table(study: Study, metrics: list[str]) -> pd.DataFrame:
    """One row per condition and metric: score [CI], Δ vs baseline and vs original_text [CI], raw and Holm flags."""
    experiment = "compression"
    rows = []
    for metric in table_metrics(study, metrics, control=True):
        part = study.rows(experiment, metric)
        if part.empty:
            continue
        cells = {c: _single_setting(part[part["condition"] == c], f"{study.dataset}/{experiment}/{c}")
                 for c in _order(part["condition"], study.trr)}
        original = cells.get(ORIGINAL)
        for condition, cell in cells.items():
            row = {"condition": condition, "rank": cell.rank, "items": cell.items, "metric": metric,
                   **_score_columns(study.score(experiment, cell, metric))}
            row.update(_diff_columns("vs_baseline", _unless_same(study.diff(experiment, cell, Cell.of(BASELINE), metric),
                                                                  condition == BASELINE)))
            if original is not None:
                row.update(_diff_columns("vs_original", _unless_same(study.diff(experiment, cell, original, metric),
                                                                      condition == ORIGINAL)))
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return _holm_columns(table, ["vs_baseline", "vs_original"], ["metric"])


def _unless_same(d: dict, same: bool) -> dict:
    """A cell compared with itself is no comparison: no p-value, so no flag (its difference stays 0)."""
    return {**d, "p": float("nan")} if same else d


def trained_questions(question_items: dict[str, list[str]], item_order: list[str], n: int) -> set[str]:
    """Questions all of whose items are among the first `n` items (those a capacity tier trained on)."""
    first = set(item_order[:n])
    return {q for q, items in question_items.items() if items and set(items) <= first}


def capacity_table(study: Study, metrics: list[str], question_items: dict | None = None,
                   item_order: list[str] | None = None) -> pd.DataFrame:
    """Tiers of original_text on the first N items (items 0 = baseline), two curves per metric:
    `all` questions (what the paper plots: it rises partly because more items are covered) and
    `trained` (only the questions of the tier's own items: how well what was trained is retained)."""
    experiment = "capacity"
    rows = []
    for metric in table_metrics(study, metrics):
        rank, tiers = study.capacity_tiers(metric)
        if not tiers:
            continue
        cells = [(0, Cell.of(BASELINE))] + [(n, Cell.of(ORIGINAL, rank, key)) for n, key in tiers]
        curves = [("all", None)]
        if question_items and item_order and study.qs is not None:
            curves.append(("trained", "tier"))
        for curve, subset in curves:
            previous = None
            for n, cell in cells:
                if curve == "trained" and n == 0:
                    continue
                only = trained_questions(question_items, item_order, n) if subset else None
                row = {"curve": curve, "items": n, "metric": metric, **_score_columns(
                    study.score(experiment, cell, metric, only))}
                row.update(_diff_columns("vs_baseline", _unless_same(
                    study.diff(experiment, cell, Cell.of(BASELINE), metric, only), n == 0)))
                if curve == "all":
                    d = study.diff(experiment, cell, previous, metric) if previous else dict.fromkeys(
                        ("diff", "pct", "ci_low", "ci_high", "p"), float("nan"))
                    row.update(_diff_columns("vs_previous", d, pct=False))
                rows.append(row)
                previous = cell
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return _holm_columns(table, ["vs_baseline", "vs_previous"], ["curve", "metric"])


def rank_table(study: Study, metrics: list[str], experiment: str, trr: dict | None = None) -> pd.DataFrame:
    """rank_items: one row per (items, rank, metric); rank_compression: per (condition, rank, metric), with TRR.
    `vs_top_rank`: the difference to the grid's highest rank in the same row (paired)."""
    index = "items" if experiment == "rank_items" else "condition"
    rows = []
    for metric in table_metrics(study, metrics):
        part = study.rows(experiment, metric)
        trained = part[part["condition"] != BASELINE]
        if trained.empty:
            continue
        ranks = sorted(set(trained["rank"]))
        if index == "items":
            keys = sorted({i for i in trained["items"]}, key=lambda i: (not i.isdigit(), int(i) if i.isdigit() else 0))
            cell_of = lambda key, r: Cell.of(ORIGINAL, r, key)  # noqa: E731
        else:
            keys = _order(trained["condition"], study.trr)
            cell_of = lambda key, r: _single_setting(  # noqa: E731
                trained[(trained["condition"] == key) & (trained["rank"] == r)], f"{study.dataset}/{experiment}/{key}/r{r}"
            ) if ((trained["condition"] == key) & (trained["rank"] == r)).any() else Cell.of(key, r, "all")
        for key in keys:
            top = cell_of(key, ranks[-1])
            for r in ranks:
                cell = cell_of(key, r)
                row = {index: key, "rank": r, "metric": metric}
                if trr is not None and index == "condition":
                    row["trr_mean"] = trr.get(key, {}).get("trr_mean", float("nan"))
                    row["trr_pooled"] = trr.get(key, {}).get("trr_pooled", float("nan"))
                row.update(_score_columns(study.score(experiment, cell, metric)))
                row.update(_diff_columns("vs_baseline", study.diff(experiment, cell, Cell.of(BASELINE), metric)))
                row.update(_diff_columns("vs_top_rank", _unless_same(study.diff(experiment, cell, top, metric),
                                                                      r == ranks[-1]), pct=False))
                rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return _holm_columns(table, ["vs_baseline", "vs_top_rank"], ["metric"])


# ---------------------------------------------------------------- 4. summary
def capacity_knee(items: list[float], scores: list[float]) -> float | None:
    """Where adding items stops paying off: the knee (kneed) of the rising part of the curve.

    Only the points up to the peak count; a curve that never rises above its start has no knee.
    """
    from kneed import KneeLocator

    peak = int(np.argmax(scores))
    items, scores = list(items)[:peak + 1], list(scores)[:peak + 1]
    if len(items) < 3:
        return None
    knee = KneeLocator(items, scores, curve="concave", direction="increasing", S=1.0).knee
    return None if knee is None else float(knee)


def curve_summary(study: Study, metric: str, curve: str, question_items=None, item_order=None) -> dict:
    """Peak and knee of a capacity curve over its trained tiers (the baseline is no tier), each with the
    spread of its bootstrap replicates (questions and seeds resampled jointly for all tiers)."""
    experiment = "capacity"
    rank, found = study.capacity_tiers(metric)
    if len(found) < 2:
        return {}
    tiers = [n for n, _ in found]
    subsets = [trained_questions(question_items, item_order, n) if curve == "trained" else None for n in tiers]
    cells = [Cell.of(ORIGINAL, rank, key) for _, key in found]
    arms = [study.arm(experiment, cell, metric, only) for cell, only in zip(cells, subsets)]
    scores = [study.score(experiment, cell, metric, only)["score"] for cell, only in zip(cells, subsets)]
    peak = tiers[int(np.argmax(scores))]
    knee = capacity_knee(tiers, scores)
    out = {"curve": curve, "tiers": tiers, "scores": scores, "peak_items": peak, "knee_items": knee}
    if study.qs is None and max(a.shape[0] for a in arms) < 2:
        return out  # one value per tier: nothing to resample
    reps = replicate_means(arms, study.boot.n_resamples, study.boot.rng("capacity", study.dataset, metric, curve))
    curves = reps.T  # (replicates, tiers)
    peak_ci = argmax_interval(curves, tiers, study.boot.confidence)
    knees = [capacity_knee(tiers, list(c)) for c in curves]
    found = np.array([k for k in knees if k is not None], dtype=float)
    from .uncertainty import interval

    out.update(peak_ci_low=peak_ci["ci_low"], peak_ci_high=peak_ci["ci_high"], peak_shares=peak_ci["shares"],
               knee_found_share=len(found) / len(knees))
    if len(found):
        out["knee_ci_low"], out["knee_ci_high"] = interval(found, study.boot.confidence)
    return out


def rank_recommendation(study: Study, metric: str, trr: dict | None) -> dict:
    from .rankfit import recommend

    experiment = "rank_compression"
    part = study.rows(experiment, metric)
    trained = part[part["condition"] != BASELINE]
    if trained.empty or not trr:
        return {"available": False, "reason": "needs the rank_compression grid and TRR"}
    cells = {}
    for _, row in trained.drop_duplicates(["condition", "rank", "items"]).iterrows():
        t = trr.get(row["condition"], {}).get("trr_mean", float("nan"))
        if t == t:
            cells[(int(row["rank"]), float(t))] = Cell.of(row["condition"], row["rank"], row["items"])
    if not cells:
        return {"available": False, "reason": "no TRR for the grid's conditions"}
    keys = sorted(cells)
    arms = [study.arm(experiment, cells[k], metric) for k in keys]
    grid, replicates = {}, {}
    point = [study.score(experiment, cells[k], metric)["score"] for k in keys]
    if study.qs is None and max(a.shape[0] for a in arms) < 2:
        reps = np.array([[p] * 2 for p in point])  # no resampling possible: a degenerate interval
    else:
        reps = replicate_means(arms, study.boot.n_resamples, study.boot.rng("rank", study.dataset, metric))
    for (r, t), s, rep in zip(keys, point, reps):
        grid.setdefault(r, {})[t] = s
        replicates.setdefault(r, {})[t] = rep
    return {"metric": metric, **recommend(grid, replicates, study.boot.confidence, margin=study.margin(metric))}


def best_condition(table: pd.DataFrame, metric: str, study: Study | None = None) -> dict:
    """The trained condition with the highest score, named the best only where it separates from the others.

    Rule: the top condition (highest point estimate) separates when its paired difference with every other
    trained condition excludes zero after Holm's adjustment over those comparisons. Against the runner-up alone
    the test would forget that the top was picked for being on top. Otherwise `condition` is None and
    `top_point_estimate` names it as no more than that; without per-question or per-seed data (`study` None, or
    comparisons without an interval) nothing separates. With one trained condition there is nothing to
    separate from (`separates` None)."""
    rows = table[(table["metric"] == metric) & (table["condition"] != BASELINE) & table["score"].notna()]
    if rows.empty:  # no condition has a score on this metric (e.g. F1 where every question is an abstention)
        return {}
    rows = rows.sort_values("score", ascending=False, kind="stable")
    best = rows.iloc[0]
    out = {"top_point_estimate": best["condition"], "score": float(best["score"]), "ci_low": float(best["ci_low"]),
           "ci_high": float(best["ci_high"]), "vs_baseline_diff": float(best["vs_baseline_diff"]),
           "vs_baseline_sig": best["vs_baseline_sig"], "vs_baseline_sig_holm": best["vs_baseline_sig_holm"]}
    others = rows.iloc[1:]
    if others.empty:
        return {**out, "condition": best["condition"], "separates": None}
    cell = lambda r: Cell.of(r["condition"], r.get("rank", 0), r.get("items", "0"))  # noqa: E731
    diffs = [study.diff("compression", cell(best), cell(r), metric) for _, r in others.iterrows()] if study else []
    separates = bool(diffs) and all(flag is True for flag in holm([d["p"] for d in diffs], ALPHA))
    runner_up = diffs[0] if diffs else {}
    return {**out, "condition": best["condition"] if separates else None, "separates": separates,
            "runner_up": others.iloc[0]["condition"], "vs_runner_up_diff": runner_up.get("diff", float("nan")),
            "vs_runner_up_ci_low": runner_up.get("ci_low", float("nan")),
            "vs_runner_up_ci_high": runner_up.get("ci_high", float("nan"))}


def headline_metric(metrics: list[str], judge_uninformative: bool) -> tuple[str | None, str]:
    """(metric, why): the metric the report plots first, the first of aggregate.metrics this run can measure.
    A judge its controls flag uninformative measures nothing here, so its metrics are passed over."""
    for metric in metrics:
        if judge_uninformative and is_judge_metric(metric):
            continue
        if metric == metrics[0]:
            return metric, "the first metric in aggregate.metrics"
        return metric, ("the first metric in aggregate.metrics that this run can measure; the judge's metrics are "
                        "passed over because the judge failed its controls: it did not reliably tell a known-right "
                        "answer from a known-wrong one")
    return None, ("none of aggregate.metrics can be measured here: they are all the judge's, and the judge failed "
                  "its controls")


def run_scale(study: Study, n_seeds: int) -> dict:
    """How large the run is on a dataset: its items, its questions (the dataset's own, not the control set's),
    the seeds per trained cell. None where the input does not say (another study's scores file)."""
    questions = None
    if study.qs is not None:
        questions = int(study.qs.loc[study.qs["question_set"] == "dataset", "question_id"].nunique())
    return {"items": study.n_items, "questions": questions, "seeds": n_seeds}


def decomposition_table(study: Study, decomposition: dict[str, pd.DataFrame], compression: pd.DataFrame,
                        trr: dict) -> pd.DataFrame:
    """Per variant: fact survival (Wilson interval), open-book and closed-book scores side by side (each with its
    interval)."""
    rows = []
    metrics = [m for m in ("f1", "answer_loglik", "answer_margin") if m in set(study.scores["metric"])]
    for variant in _order(decomposition, study.trr):
        records = decomposition[variant]
        records = records.assign(answer_margin=records["answer_loglik"] - records["distractor_loglik"])
        row = {"variant": variant, "trr_mean": trr.get(variant, {}).get("trr_mean", float("nan")),
               "trr_pooled": trr.get(variant, {}).get("trr_pooled", float("nan"))}
        row.update(fact_survival(records, study.boot.confidence),
                   contexts_truncated=int(records["context_truncated"].sum()))
        for metric in metrics:
            ob = estimate(records[metric].to_numpy(float)[None, :], study.boot, ("open", study.dataset, variant, metric))
            row.update({f"open_book_{metric}": ob["score"], f"open_book_{metric}_ci_low": ob["ci_low"],
                        f"open_book_{metric}_ci_high": ob["ci_high"]})
            closed = compression[(compression["condition"] == variant) & (compression["metric"] == metric)] \
                if not compression.empty else compression
            if len(closed):
                c = closed.iloc[0]
                row.update({f"closed_book_{metric}": c["score"], f"closed_book_{metric}_ci_low": c["ci_low"],
                            f"closed_book_{metric}_ci_high": c["ci_high"]})
        rows.append(row)
    if not compression.empty:
        base = {"variant": BASELINE}
        for metric in metrics:
            c = compression[(compression["condition"] == BASELINE) & (compression["metric"] == metric)]
            if len(c):
                base.update({f"closed_book_{metric}": c.iloc[0]["score"], f"closed_book_{metric}_ci_low": c.iloc[0]["ci_low"],
                             f"closed_book_{metric}_ci_high": c.iloc[0]["ci_high"]})
        rows.insert(0, base)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- 5. the whole stage
@dataclass(frozen=True)
class Settings:
    """Config `aggregate:` (see the schema; defaults live only there)."""

    metrics: list
    n_resamples: int
    confidence: float
    seed: int
    inert_tolerance: float
    equivalence_margins: dict  # metric (or alias) -> δ: "no difference" means within ±δ (TOST)

    @classmethod
    def from_dict(cls, values: dict) -> "Settings":
        names = set(cls.__dataclass_fields__)
        if set(values) != names:
            raise StageError(f"aggregate settings: unknown keys {sorted(set(values) - names)}, "
                             f"missing keys {sorted(names - set(values))}")
        return cls(**values)

    @property
    def bootstrap(self) -> Bootstrap:
        return Bootstrap(self.n_resamples, self.confidence, self.seed)


def dataset_kind(question_types) -> str:
    return "wiki" if set(question_types) <= {"wiki"} else "longmemeval"


def tables_for(study: Study, settings: Settings, trr: dict, question_items=None, item_order=None,
               profiles: dict | None = None) -> dict[str, pd.DataFrame]:
    """`profiles`: each condition's compressor, TRR and fact survival (`variant_profiles`), leading the compression
    table; from the TRR alone when not given."""
    if profiles is None:
        profiles = variant_profiles(set(study.scores["condition"]), trr)
    tables = {"compression": lead_with_variants(compression_table(study, settings.metrics), profiles)}
    present = study.experiments()
    if "capacity" in present:
        tables["capacity"] = capacity_table(study, settings.metrics, question_items, item_order)
    for grid in ("rank_items", "rank_compression"):
        if grid in present:
            tables[grid] = rank_table(study, settings.metrics, grid, trr)
    return tables


def summarise_dataset(study: Study, tables: dict[str, pd.DataFrame], settings: Settings, trr: dict,
                      question_items=None, item_order=None, judge_uninformative: bool = False) -> dict:
    """`judge_uninformative`: the judge failed its controls on this dataset (then no judge metric heads the report)."""
    metrics = table_metrics(study, settings.metrics)
    trained = study.scores[(study.scores["condition"] != BASELINE) & (study.scores["metric"] == metrics[0])] \
        if metrics else study.scores.iloc[:0]
    seeds = trained.groupby(["experiment", "condition", "rank", "items"]).size()  # replicates per cell
    n_seeds = int(seeds.max()) if len(seeds) else 0
    headline, why = headline_metric(metrics, judge_uninformative)
    summary = {"kind": dataset_kind(study.question_types), "metrics": metrics, "headline": headline,
               "headline_why": why, "judge_uninformative": judge_uninformative,
               "scale": run_scale(study, n_seeds), "n_seeds": n_seeds,
               "seed_note": ("one seed: every interval is conditional on the trained adapter (only questions vary)"
                             if n_seeds <= 1 else f"{n_seeds} seeds: intervals are t intervals over seeds (with "
                             f"{n_seeds - 1} degrees of freedom at that level) and paired questions")}
    compression = tables.get("compression", pd.DataFrame())
    summary["best_condition"] = {m: best_condition(compression, m, study) for m in metrics} if len(compression) else {}
    if "capacity" in tables and len(tables["capacity"]):
        summary["capacity"] = {m: {curve: curve_summary(study, m, curve, question_items, item_order)
                                   for curve in ("all", "trained")
                                   if curve == "all" or (question_items and study.qs is not None)}
                               for m in metrics}
    if "rank_compression" in tables and len(tables["rank_compression"]):
        summary["rank_recommendation"] = {m: rank_recommendation(study, m, trr) for m in metrics}
    return summary


def write_csv(frame: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def _jsonable(obj):
    """Plain JSON values: numpy scalars to Python, NaN and NA to null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is pd.NA or obj is None or (isinstance(obj, float) and math.isnan(obj)):
        return None
    return obj


def trr_by_variant(trr: pd.DataFrame | None, dataset: str) -> dict:
    if trr is None:
        return {}
    part = trr[trr["dataset"] == dataset].set_index("variant")
    return {v: {"trr_mean": r["trr_mean"], "trr_pooled": r.get("trr_pooled", float("nan"))} for v, r in part.iterrows()}


def pipeline(inputs: dict, settings: Settings) -> dict:
    """The stage on this workflow's outputs. `inputs` (per dataset unless named): answers, answer_metas,
    verdicts, verdict_metas, judge_controls, decomposition (variant -> file), compressed_metas (variant -> the
    compressed variant's provenance file), docs, experiments; trr (one file); base_model (the model's name)."""
    boot = settings.bootstrap
    trr = pd.read_csv(inputs["trr"]) if inputs.get("trr") else None
    out = {"question_scores": [], "scores": [], "runs": [], "tables": {}, "decomposition": {}, "summary": {}}
    kinds, metrics_of, capacity_diffs = {}, {}, {}
    for dataset, pairs in sorted(inputs["experiments"].items()):
        if not inputs["answers"].get(dataset):
            continue  # prepared (e.g. for the judge's controls) but no experiment evaluates it
        answers = pd.concat([pd.read_json(p, lines=True) for p in inputs["answers"][dataset]], ignore_index=True)
        verdict_files = inputs.get("verdicts", {}).get(dataset, [])
        verdicts = pd.concat([pd.read_json(p, lines=True) for p in verdict_files], ignore_index=True) \
            if verdict_files else None
        qs = question_scores(answers, verdicts, dataset)
        qs.insert(0, "dataset", qs.pop("dataset"))
        scores = run_scores(qs, dataset, [tuple(p) for p in pairs])
        out["question_scores"].append(qs)
        out["scores"].append(scores)

        metas = [read_json(p) for p in inputs["answer_metas"].get(dataset, [])]
        runs = [{**run, "self_check_agreement": m["self_check"]["agreement"]} for m in metas for run in m["runs"]]
        diagnostics = run_diagnostics(answers, runs, boot, settings.inert_tolerance)
        diagnostics.insert(0, "dataset", dataset)
        out["runs"].append(diagnostics)

        docs = read_jsonl(inputs["docs"][dataset])
        item_order = [d["item_id"] for d in docs]
        main = answers[(answers["question_set"] == "dataset")].drop_duplicates("question_id")
        question_items = dict(zip(main["question_id"], main["item_ids"]))
        trr_of = trr_by_variant(trr, dataset)
        study = Study(scores, dataset, boot, qs, n_items=len(item_order), margins=settings.equivalence_margins,
                      trr=trr_of)
        decomposition = {v: pd.read_json(p, lines=True)
                         for v, p in inputs.get("decomposition", {}).get(dataset, {}).items()}
        profiles = variant_profiles(
            set(scores["condition"]), trr_of, {v: fact_survival(r, boot.confidence) for v, r in decomposition.items()},
            {v: read_json(p) for v, p in inputs.get("compressed_metas", {}).get(dataset, {}).items()},
            inputs.get("base_model"))
        tables = tables_for(study, settings, trr_of, question_items, item_order, profiles)
        for name, table in tables.items():
            out["tables"][(name, dataset)] = table
        if decomposition:
            out["decomposition"][dataset] = decomposition_table(study, decomposition, tables["compression"], trr_of)

        controls_file = inputs.get("judge_controls", {}).get(dataset)
        controls = judge_controls(pd.read_json(controls_file, lines=True), boot, dataset) if controls_file else None
        # flagged only where the controls ran and the judge failed them: without controls nothing is known
        uninformative = bool(controls and controls.get("available") and not controls.get("informative"))
        summary = summarise_dataset(study, tables, settings, trr_of, question_items, item_order, uninformative)
        inert = diagnostics[diagnostics.get("inert", pd.Series(False, index=diagnostics.index)).fillna(False).astype(bool)]
        checks = [m["self_check"] for m in metas]
        agreed, n = sum(c["agreed"] for c in checks), sum(c["n"] for c in checks)
        summary.update(
            n_runs=len(diagnostics), inert_runs=inert["run_id"].tolist(),
            self_check={"backend": metas[0]["backend"] if metas else None,
                        "check_backend": checks[0]["check_backend"] if checks else None,
                        "agreed": agreed, "n": n, "agreement": agreed / n if n else None,
                        "identical": sum(c["identical"] for c in checks),
                        "min_chunk_agreement": min((c["agreement"] for c in checks if c["agreement"] is not None),
                                                   default=None)},
        )
        if controls is not None:
            summary["judge_controls"] = controls
        verdict_metas = [read_json(p) for p in inputs.get("verdict_metas", {}).get(dataset, [])]
        summary["judge"] = judge_identity(verdict_metas, dataset)
        if summary["kind"] == "longmemeval":
            summary["task_average"] = task_average_note(main["question_type"])
            summary["training_set"] = ("pooled: every question's haystack sessions form one training set (each "
                                       "session once, however many questions share it), so one adapter per "
                                       "condition holds every history; LongMemEval's own setting gives each "
                                       "question only its own history")
        out["summary"][dataset] = summary
        kinds[dataset] = summary["kind"]
        metrics_of[dataset] = summary["metrics"]
        for metric in summary.get("capacity", {}):
            capacity_diffs[(dataset, metric)] = _peak_vs_last(study, metric)
    from .claims import evaluate_claims, replicate_spread

    uninformative_judges = {d for d, s in out["summary"].items() if s["judge_uninformative"]}
    out["claims"] = evaluate_claims(out["tables"], kinds, metrics_of, capacity_diffs, uninformative_judges)
    out["replicate_spread"] = replicate_spread()
    return out


def _peak_vs_last(study: Study, metric: str) -> tuple[float, float] | tuple[None, None]:
    """Interval of (peak tier − largest tier) on all questions, for the capacity claim."""
    rank, tiers = study.capacity_tiers(metric)
    if len(tiers) < 2:
        return None, None
    cells = [Cell.of(ORIGINAL, rank, key) for _, key in tiers]
    scores = [study.score("capacity", cell, metric)["score"] for cell in cells]
    peak = int(np.argmax(scores))
    if peak == len(tiers) - 1:
        return None, None
    d = study.diff("capacity", cells[peak], cells[-1], metric)
    return d["ci_low"], d["ci_high"]


def standalone(scores: pd.DataFrame, settings: Settings, qs: pd.DataFrame | None, trr: pd.DataFrame | None) -> dict:
    """The tables and summary of a long-format scores file (this pipeline's or another study's)."""
    missing = set(SCORE_COLUMNS) - set(scores.columns)
    if missing:
        raise StageError(f"scores table lacks columns {sorted(missing)}")
    out = {"tables": {}, "summary": {}}
    for dataset in sorted(scores["dataset"].unique()):
        trr_of = trr_by_variant(trr, dataset)
        study = Study(scores, dataset, settings.bootstrap, qs, margins=settings.equivalence_margins, trr=trr_of)
        resolved = table_metrics(study, settings.metrics)
        if not resolved:
            raise StageError(f"{dataset}: none of the metrics {settings.metrics} is in the scores table; present: "
                             f"{sorted(set(study.scores['metric']))}")
        tables = tables_for(study, settings, trr_of)
        for name, table in tables.items():
            out["tables"][(name, dataset)] = table
        out["summary"][dataset] = summarise_dataset(study, tables, settings, trr_of)
    return out


# ---------------------------------------------------------------- command line
def _pairs(values: list[list[str]] | None) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for dataset, path in values or []:
        grouped.setdefault(dataset, []).append(path)
    return grouped


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress aggregate")
    parser.description = ("score tables with their intervals, from this pipeline's answers (--answers ...) or from "
                          "any long-format scores CSV (--from-scores)")
    parser.add_argument("--settings", type=parse_json_arg, required=True, help="config `aggregate` as JSON")
    pipe = parser.add_argument_group("from this pipeline's outputs (every path given, none derived)")
    pair = dict(nargs=2, action="append", metavar=("DATASET", "FILE"))
    pipe.add_argument("--answers", **pair, help="an answers chunk (repeat)")
    pipe.add_argument("--answers-meta", **pair, help="an answers chunk's provenance (repeat)")
    pipe.add_argument("--verdicts", **pair, help="a judge verdicts chunk (repeat)")
    pipe.add_argument("--verdicts-meta", **pair, help="a verdicts chunk's provenance: which judge graded (repeat)")
    pipe.add_argument("--judge-controls", **pair, help="the judge's control verdicts of a dataset")
    pipe.add_argument("--decomposition", nargs=3, action="append", metavar=("DATASET", "VARIANT", "FILE"),
                      help="a variant's fact survival and open-book records (repeat)")
    pipe.add_argument("--compressed-meta", nargs=3, action="append", metavar=("DATASET", "VARIANT", "FILE"),
                      help="a compressed variant's provenance: who compressed it (repeat)")
    pipe.add_argument("--base-model", help="the model's name, as the config gives it (it writes the summaries)")
    pipe.add_argument("--docs", **pair, help="a dataset's items (their order defines the capacity tiers)")
    pipe.add_argument("--experiments", type=parse_json_arg, help='{"dataset": [[experiment, run_id], ...]}')
    pipe.add_argument("--trr", help="trr.csv from `lorapress stats`")
    pipe.add_argument("--scores", help="output: long-format scores CSV")
    pipe.add_argument("--question-scores", help="output: per-question scores CSV")
    pipe.add_argument("--runs", help="output: per-run diagnostics CSV (inert adapters, self-check, training)")
    pipe.add_argument("--table", nargs=3, action="append", metavar=("EXPERIMENT", "DATASET", "FILE"),
                      help="output: one table (repeat)")
    pipe.add_argument("--decomposition-table", **pair, help="output: a dataset's decomposition table")
    pipe.add_argument("--summary", help="output: summary.json")
    alone = parser.add_argument_group("from a long-format scores file")
    alone.add_argument("--from-scores", help="scores CSV: dataset, experiment, condition, rank, items, seed, metric, "
                                             "value, n")
    alone.add_argument("--from-question-scores", help="per-question scores CSV, for intervals over questions")
    alone.add_argument("--out-dir", help="where to write {experiment}_{dataset}.csv and summary.json")
    return parser


def main(argv: list[str] | None = None) -> None:
    global ALPHA
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings.from_dict(args.settings)
    ALPHA = 1 - settings.confidence
    trr = pd.read_csv(args.trr) if args.trr else None
    if args.from_scores:
        if not args.out_dir:
            parser.error("--from-scores needs --out-dir")
        qs = pd.read_csv(args.from_question_scores) if args.from_question_scores else None
        result = standalone(pd.read_csv(args.from_scores), settings, qs, trr)
        from pathlib import Path

        for (name, dataset), table in result["tables"].items():
            write_csv(table, Path(args.out_dir) / f"{name}_{dataset}.csv")
        write_json(Path(args.out_dir) / "summary.json", _jsonable(result["summary"]))
        return
    decomposition: dict[str, dict[str, str]] = {}
    for dataset, variant, path in args.decomposition or []:
        decomposition.setdefault(dataset, {})[variant] = path
    compressed_metas: dict[str, dict[str, str]] = {}
    for dataset, variant, path in args.compressed_meta or []:
        compressed_metas.setdefault(dataset, {})[variant] = path
    inputs = {"answers": _pairs(args.answers), "answer_metas": _pairs(args.answers_meta),
              "verdicts": _pairs(args.verdicts), "verdict_metas": _pairs(args.verdicts_meta),
              "judge_controls": {d: p[0] for d, p in _pairs(args.judge_controls).items()},
              "decomposition": decomposition, "compressed_metas": compressed_metas, "base_model": args.base_model,
              "docs": {d: p[0] for d, p in _pairs(args.docs).items()},
              "experiments": args.experiments, "trr": args.trr}
    result = pipeline(inputs, settings)
    declared = {(e, d): path for e, d, path in args.table or []}
    for key, path in declared.items():
        table = result["tables"].get(key)
        if table is None:
            raise StageError(f"aggregate: no {key[0]} table for dataset {key[1]} (is the experiment enabled there?)")
        write_csv(table, path)
    for dataset, path in _pairs(args.decomposition_table).items():
        write_csv(result["decomposition"].get(dataset, pd.DataFrame()), path[0])
    write_csv(pd.concat(result["question_scores"], ignore_index=True), args.question_scores)
    write_csv(pd.concat(result["scores"], ignore_index=True), args.scores)
    write_csv(pd.concat(result["runs"], ignore_index=True), args.runs)
    write_json(args.summary, _jsonable({"datasets": result["summary"], "claims": result["claims"],
                                        "paper_replicate_spread": result["replicate_spread"],
                                        "confidence": settings.confidence}))
    log.info("wrote %d tables", len(declared))
