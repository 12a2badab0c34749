"""Proof that the machinery worked: adapters that learned, backends that agree, a judge that judges.

- Every adapter is compared with the untuned baseline on the same questions: the share of its
  answers that differ, and its change in answer log-likelihood (with an interval). An adapter
  that changes no answer and no log-likelihood is *inert*: a training step at LR 0, a
  silently dropped adapter, a misapplied LoRARequest all look like that, and all look like a
  real result in a table of scores.
- The evaluation self-check (see `evaluate`) gives each chunk's agreement between backends.
- The judge's controls: the reference answer must pass and another question's reference must
  fail. A judge whose verdicts on the two cannot be told apart is flagged uninformative.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import BASELINE
from .judge import is_rubric
from .uncertainty import Bootstrap, difference

# A rubric score counts as a pass from 4 ("right but imprecise") and a rejection up to 2.
PASS_SCORE, REJECT_SCORE = 4, 2


def run_diagnostics(answers: pd.DataFrame, runs: list[dict], boot: Bootstrap, inert_tolerance: float) -> pd.DataFrame:
    """One row per evaluated run: changed answers, log-likelihood gain, truncation, training facts, inertness."""
    main = answers[answers["question_set"] == "dataset"]
    base = main[main["run_id"] == BASELINE].set_index("question_id")
    rows = []
    for run in runs:
        mine = main[main["run_id"] == run["run_id"]].set_index("question_id")
        common = mine.index.intersection(base.index)
        row = {"run_id": run["run_id"], "n_questions": len(mine),
               "truncated_pct": 100 * float(mine["truncated"].mean()) if len(mine) else float("nan"),
               "self_check_agreement": run.get("self_check_agreement")}
        row.update({f"train_{k}": v for k, v in (run.get("training") or {}).items()})
        if run["run_id"] != BASELINE and len(common):
            changed = (mine.loc[common, "prediction"] != base.loc[common, "prediction"]).mean()
            gain = difference(mine.loc[common, "answer_loglik"].to_numpy(float)[None, :],
                              base.loc[common, "answer_loglik"].to_numpy(float)[None, :], boot,
                              ("inert", run["run_id"]))
            row.update(changed_answers_pct=100 * float(changed), loglik_gain=gain["diff"],
                       loglik_gain_ci_low=gain["ci_low"], loglik_gain_ci_high=gain["ci_high"],
                       inert=bool(changed == 0 and abs(gain["diff"]) < inert_tolerance))
        rows.append(row)
    return pd.DataFrame(rows)


def control_outcomes(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per control verdict: the judge's value on a 0-1 'says correct' scale and whether it was right.

    An unparsed verdict is never right (as LongMemEval counts it wrong), whichever control it was on: read as
    'no' it would pass every known-wrong answer and flatter a judge that cannot answer."""
    out = verdicts.copy()
    rubric = out["question_type"].map(is_rubric)
    score = out.get("judge_score", pd.Series(np.nan, index=out.index))
    correct = out.get("judge_correct", pd.Series(np.nan, index=out.index))
    out["says_correct"] = np.where(rubric, (score - 1) / 4, correct)  # 1-5 -> 0-1; yes/no -> 1/0
    passed = np.where(rubric, score >= PASS_SCORE, correct == 1)
    rejected = np.where(rubric, score <= REJECT_SCORE, correct == 0)
    unparsed = np.where(rubric, score.isna(), correct.isna())
    if "judge_unparsed" in out:
        unparsed = out["judge_unparsed"].fillna(pd.Series(unparsed, index=out.index)).astype(bool).to_numpy()
    out["unparsed"] = unparsed
    out["right"] = np.where(unparsed, 0.0, np.where(out["control"] == "reference", passed, rejected).astype(float))
    return out


def judge_controls(verdicts: pd.DataFrame, boot: Bootstrap, dataset: str) -> dict:
    """The judge's accuracy on its controls and whether it tells a right answer from a wrong one."""
    if verdicts.empty:
        return {"available": False}
    out = control_outcomes(verdicts)
    ref = out[out["control"] == "reference"].set_index("question_id")["says_correct"]
    wrong = out[out["control"] == "wrong"].set_index("question_id")["says_correct"]
    common = ref.index.intersection(wrong.index)
    gap = difference(ref[common].to_numpy(float)[None, :], wrong[common].to_numpy(float)[None, :], boot,
                     ("judge_controls", dataset))
    accuracy = float(np.nanmean(out["right"])) if out["right"].notna().any() else float("nan")
    informative = bool(gap["ci_low"] > 0 and accuracy > 0.5)
    return {"available": True, "n_controls": len(out), "accuracy": 100 * accuracy,
            "reference_pass_pct": 100 * float(np.nanmean(out.loc[out["control"] == "reference", "right"])),
            "wrong_rejected_pct": 100 * float(np.nanmean(out.loc[out["control"] == "wrong", "right"])),
            "discrimination": gap["diff"], "discrimination_ci_low": gap["ci_low"],
            "discrimination_ci_high": gap["ci_high"], "unparsed_pct": 100 * float(out["unparsed"].mean()),
            "informative": informative}
