"""Stage `report`: one self-contained HTML page (plots embedded as PNG data URIs).

It opens with the run's scale (model, items, questions, seeds), then answers the study's
questions in order, every number with its interval: the answers in one table (each variant's
compressor, TRR and fact survival first); what these runs support of the published claims; whether every adapter learned
and the backends agree; how much each variant compresses (TRR); where the knowledge went
(fact survival, open book, closed book); what an adapter learns from each variant; where
adding knowledge stops helping; which rank fits which compression; what the judge says
and whether it can judge; what it cost; and what produced it.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import re
from datetime import datetime, timezone

import pandas as pd

from . import BASELINE
from .io import atomic_path, git_commit, package_versions, parse_json_arg, read_json
from .metrics import is_judge_metric
from .stats import level_order_holds
from .variants import order_by_trr

CSS = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:1em 0;font-size:.85em}
th,td{border-top:1px solid #ddd;border-bottom:1px solid #ddd;padding:.3em .6em;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #444}
.note{color:#555;font-size:.9em}.warn{color:#a33;font-weight:bold}.ok{color:#276;font-weight:bold}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em}img{max-width:100%}
nav a{margin-right:1em}
"""
METRIC_LABELS = {
    "f1": "token F1 (0-100)", "exact_match": "exact match (%)", "rougeL": "ROUGE-L F (0-100)",
    "judge_score": "judge score (1-5)", "judge_expected": "judge expected score (1-5, probability-weighted)",
    "judge_accuracy": "judge accuracy (%)", "judge_p_yes": "judge P(yes) (%)",
    "answer_loglik": "answer log-likelihood (nats/token)", "answer_margin": "answer − distractor log-likelihood",
    "answer_preferred": "answer preferred over distractor (%)", "control_f1": "control F1 (forgetting)",
    "control_loglik": "control log-likelihood (forgetting)",
    "mc_acc": "multiple-choice accuracy (%)", "mc_acc_norm": "multiple-choice accuracy, length-normalised (%)",
}
# Where a blind guess already scores: said beside every table or figure of such a metric, so 25% is not read as
# knowledge gained.
CHANCE_NOTES = {
    "mc_acc": "Multiple-choice accuracy is the share of questions on which the model finds the right answer more "
              "likely than each of three wrong ones, so guessing blindly among the four would already score 25%.",
    "mc_acc_norm": "Length-normalised multiple-choice accuracy is the same with each answer's likelihood counted per "
                   "character, so a long answer is not at a disadvantage; guessing blindly would again score 25%.",
}


# ---------------------------------------------------------------- helpers
def figure_html(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table_html(frame: pd.DataFrame, digits: int = 2) -> str:
    body = frame.to_html(index=False, float_format=lambda v: f"{v:.{digits}f}", na_rep="–", border=0, escape=True)
    return f'<div class="scroll">{body}</div>'


def num(value, digits: int = 2, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def with_ci(value, low, high, digits: int = 2, sign: bool = False) -> str:
    text = num(value, digits, sign)
    if text != "–" and num(low) != "–":
        text += f" [{num(low, digits, sign)}, {num(high, digits, sign)}]"
    return text


def is_true(flag) -> bool:
    return flag is True or flag == "True" or flag == 1.0


def delta(row, prefix: str, digits: int = 2) -> str:
    """`+0.54 [+0.42, +0.67] (+12.3%) *†`: the difference with its interval, the % beside it,
    * where the raw interval excludes zero, † where it survives Holm's adjustment in its table."""
    if f"{prefix}_diff" not in row or num(row.get(f"{prefix}_diff")) == "–":
        return "–"
    text = with_ci(row[f"{prefix}_diff"], row.get(f"{prefix}_ci_low"), row.get(f"{prefix}_ci_high"), digits, True)
    pct = row.get(f"{prefix}_pct")
    if num(pct) != "–":
        text += f" ({pct:+.1f}%)"
    marks = ("*" if is_true(row.get(f"{prefix}_sig")) else "") + ("†" if is_true(row.get(f"{prefix}_sig_holm")) else "")
    return text + (f" {marks}" if marks else "")


# " [self-judge]" when the judge was the model under test: set once per page (`mark_judge`), so every table and
# figure that shows a judge metric says so, not only the judge's own section.
_JUDGE_TAG = {"tag": ""}


def mark_judge(summary: dict) -> None:
    judges = [s.get("judge") or {} for s in summary.get("datasets", {}).values()]
    _JUDGE_TAG["tag"] = " [self-judge]" if any(j.get("self_judge") for j in judges) else ""


def label(metric: str) -> str:
    text = METRIC_LABELS.get(metric, metric)
    return text + _JUDGE_TAG["tag"] if is_judge_metric(metric) else text


def chance_note(metric: str) -> str:
    """The metric's chance level in one sentence, or nothing for a metric without one."""
    return note(CHANCE_NOTES[metric]) if metric in CHANCE_NOTES else ""


def judge_short(judge: dict) -> str:
    return f"self-judge ({judge['model']})" if judge["self_judge"] else judge["model"]


def judge_description(judge: dict | None) -> str:
    """Which judge graded, in words: 'self-judge (base: the model under test)' or the judge and its criteria."""
    if not judge:
        return "judge not recorded (verdicts without provenance)"
    who = (f"self-judge ({judge['model']}: the model under test grades its own answers)" if judge["self_judge"]
           else f"{judge['model']} (not the model under test)")
    criteria = (f"the user's templates as written, sha256 {judge['templates_sha256'][:12]}…"
                if judge.get("templates_sha256") else "lorapress's wording of LongMemEval's criteria, official meaning")
    return f"{who}; {criteria}"


JUDGE_UNINFORMATIVE = "judge uninformative"


def judge_says_nothing(s: dict, metric: str) -> bool:
    """A judge metric on a dataset whose judge failed its controls: no cell shows it as a result."""
    return bool(s.get("judge_uninformative")) and is_judge_metric(metric)


def model_size(name: str | None) -> str | None:
    """The size a model's name states: '135M' from builtin:smollm2-135m-instruct, '8B' from Qwen/Qwen3-8B."""
    found = re.search(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)([mb])(?![a-z])", str(name or "").lower())
    return found.group(1) + found.group(2).upper() if found else None


def _count(n, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def scale_sentence(summary: dict, model: str | None) -> str:
    """'135M model (builtin:smollm2-135m-instruct); wiki: 12 items, 36 questions, 1 seed': how large the run is."""
    parts = []
    if model:
        size = model_size(model)
        parts.append(f"{size} model ({model})" if size else f"model {model}")
    for dataset, s in summary.get("datasets", {}).items():
        scale = s.get("scale", {})
        counts = [_count(scale[k], k[:-1]) for k in ("items", "questions", "seeds") if scale.get(k) is not None]
        parts.append(f"{dataset}: {', '.join(counts) or 'size not recorded'}")
    return "; ".join(parts)


def lead_cells(row, trr_mean=None) -> dict:
    """A variant's first cells: who compressed it, how much it lost (TRR) and how many answers it still states
    (fact survival). `trr_mean`: the TRR where the table has none (tables written before these columns)."""
    trr = row.get("trr_mean") if num(row.get("trr_mean")) != "–" else trr_mean
    compressor = row.get("compressor")
    return {"compressor": compressor if isinstance(compressor, str) else "–", "TRR %": num(trr, 1),
            "fact survival % [95% CI]": with_ci(row.get("fact_survival"), row.get("fact_survival_ci_low"),
                                                row.get("fact_survival_ci_high"), 1)}


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<h2 id="{anchor}">{html.escape(title)}</h2>' + "".join(p for p in parts if p)


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


SIG_NOTE = ("Differences are points of the metric with their 95% interval and, in brackets, % of the reference; "
            "* = the interval excludes zero; † = still significant after Holm's adjustment for the comparisons in "
            "its table. With several seeds an interval is a t interval: seeds known to S − 1 degrees of freedom, "
            "questions paired; with one seed it is conditional on that adapter (questions resampled). "
            "<b>seed sd</b>: how far one seed's run lands from another's. "
            "<b>question se</b>: how far other questions of the same kind would move the score. "
            "<b>if no difference</b>: for a comparison not significant after Holm, either <i>equivalent within "
            "±δ</i> (its 90% interval lies inside the metric's margin δ, config aggregate.equivalence_margins) or "
            "<i>too small to see with these seeds</i>: it could not detect less than ±MDD, the smallest difference "
            "found with 80% power at α/m, Holm's first step over the table's m comparisons.")


def if_no_difference(row, prefix: str, digits: int = 2) -> str:
    """'equivalent within ±δ' or 'could not detect less than ±MDD' for a comparison not significant
    after Holm; '–' where it is significant or there is no comparison (absence of evidence is not evidence
    of absence: the two readings keep them apart)."""
    if num(row.get(f"{prefix}_p")) == "–" or is_true(row.get(f"{prefix}_sig_holm")):
        return "–"
    if is_true(row.get(f"{prefix}_equivalent")):
        return f"equivalent within ±{row[f'{prefix}_margin']:g}"
    smallest = row.get(f"{prefix}_mdd")
    if num(smallest, digits) == "–":
        return "no evidence for a difference"
    return f"too small to see with these seeds (could not detect less than ±{num(smallest, digits)})"


# ---------------------------------------------------------------- sections
FACT_NOTE = ("<b>compressor</b>: who wrote the variant's text; <b>TRR</b>: how much shorter it is than the original "
             "(%); <b>fact survival</b>: the share of questions whose answer the text still states, with its 95% "
             "interval. Where fact survival falls, a falling score is the compressor's doing, not the adapter's.")


def best_condition_cell(best: dict) -> str:
    """The best condition in words: named only where it separates from the others (summary `separates`)."""
    if not best:
        return "–"
    if best.get("separates") is False:
        return f"no condition separates from the others (highest point estimate: {best['top_point_estimate']})"
    if best.get("separates") is None and best.get("top_point_estimate"):
        return f"{best['condition']} (the only trained condition)"
    return best.get("condition") or "–"


def variants_table(s: dict, table: pd.DataFrame) -> pd.DataFrame:
    """A dataset's conditions (`s`: its summary, `table`: its compression table): compressor, TRR and fact survival
    first, then each metric's score."""
    rows = []
    for condition, part in table.groupby("condition", sort=False):
        row = {"condition": condition, **lead_cells(part.iloc[0])}
        for metric in s.get("metrics", []):
            r = part[part["metric"] == metric]
            row[label(metric)] = JUDGE_UNINFORMATIVE if judge_says_nothing(s, metric) else (
                with_ci(r.iloc[0]["score"], r.iloc[0]["ci_low"], r.iloc[0]["ci_high"]) if len(r) else "–")
        rows.append(row)
    return pd.DataFrame(rows)


def answers_section(summary: dict, compression: dict[str, pd.DataFrame] | None = None) -> str:
    rows = []
    for dataset, s in summary["datasets"].items():
        for metric in s["metrics"]:
            if judge_says_nothing(s, metric):
                cells = ("best condition", "its score [CI]", "vs baseline", "capacity peak (items)", "knee",
                         "recommended rank")
                rows.append({"dataset": dataset, "metric": label(metric), **dict.fromkeys(cells, JUDGE_UNINFORMATIVE)})
                continue
            best = s.get("best_condition", {}).get(metric, {})
            cap = s.get("capacity", {}).get(metric, {}).get("all", {})
            rec = s.get("rank_recommendation", {}).get(metric, {})
            bands = "; ".join(f"TRR {b['trr_band']}%: {b['verdict']}" for b in rec.get("bands", [])) \
                if rec.get("available") else rec.get("reason", "–")
            peak = "–"
            if cap.get("peak_items") is not None:
                peak = f"{cap['peak_items']}" + (f" [{num(cap.get('peak_ci_low'), 0)}, {num(cap.get('peak_ci_high'), 0)}]"
                                                  if cap.get("peak_ci_low") is not None else "")
            knee = "–" if cap.get("knee_items") is None else num(cap["knee_items"], 0) + (
                f" [{num(cap.get('knee_ci_low'), 0)}, {num(cap.get('knee_ci_high'), 0)}]" if cap.get("knee_ci_low") is not None else "")
            rows.append({"dataset": dataset, "metric": label(metric), "best condition": best_condition_cell(best),
                         "its score [CI]": with_ci(best.get("score"), best.get("ci_low"), best.get("ci_high")),
                         "vs baseline": (num(best.get("vs_baseline_diff"), 2, True) +
                                         (" *" if is_true(best.get("vs_baseline_sig")) else "") +
                                         ("†" if is_true(best.get("vs_baseline_sig_holm")) else "")) if best else "–",
                         "capacity peak (items)": peak, "knee": knee, "recommended rank": bands})
    checks = []
    for dataset, s in summary["datasets"].items():
        check = s.get("self_check", {})
        judge = s.get("judge_controls", {})
        checks.append(
            f"<li><b>{html.escape(dataset)}</b>: {len(s.get('inert_runs', []))} of {s.get('n_runs', 0) - 1} adapters "
            f"inert{' (' + ', '.join(map(html.escape, s['inert_runs'])) + ')' if s.get('inert_runs') else ''}; "
            f"self-check {check.get('agreed', 0)} of {check.get('n', 0)} sampled answers agree through "
            f"{html.escape(str(check.get('backend')))} and {html.escape(str(check.get('check_backend')))} "
            f"({check.get('identical', 0)} identical, the rest parting at a near-tie); "
            + (f"graded by {html.escape(judge_short(s.get('judge')))}; " if s.get("judge") else "")
            + (f"judge {'informative' if judge.get('informative') else '<span class=warn>uninformative</span>'} "
               f"({num(judge.get('accuracy'), 0)}% right on its controls); " if judge.get("available") else "")
            + html.escape(s.get("seed_note", "")) + "</li>")
    listed = {m for s in summary["datasets"].values() for m in s["metrics"]}
    variants = [f"<h4>{html.escape(dataset)}</h4>"
                + table_html(variants_table(summary["datasets"].get(dataset, {}), table))
                for dataset, table in (compression or {}).items() if len(table)]
    return section("answers", "The answers in one table",
                   *(["<h3>Each variant: what the compressor kept, what an adapter learned</h3>", *variants,
                      note(FACT_NOTE + " Scores: mean over questions and seeds, with its 95% interval."),
                      "<h3>The study's questions, per metric</h3>"] if variants else []),
                   table_html(pd.DataFrame(rows)),
                   *(chance_note(m) for m in CHANCE_NOTES if m in listed),
                   note("* = the interval excludes zero, † = also after Holm's adjustment. A condition is named "
                        "<b>best</b> only where it beats every other condition by more than chance could give (each "
                        "difference's 95% interval, paired on the same questions, excludes zero after Holm's "
                        "adjustment for the comparisons); otherwise the table says that no condition separates from "
                        "the others and names the highest score only as that. <b>judge uninformative</b>: the judge "
                        "failed its controls on this dataset (it could not tell a known-right answer from a "
                        "known-wrong one), so its scores say nothing. Capacity peak and knee "
                        "carry the 95% interval of their bootstrap replicates. A rank is recommended only where the "
                        "interval of its lead over the runner-up excludes zero."),
                   f"<ul>{''.join(checks)}</ul>")


def claims_section(summary: dict, scale: str = "") -> str:
    """`scale`: the run's scale in words (`scale_sentence`): the claims are tested at it, not at the study's."""
    claims = summary.get("claims", [])
    if not claims:
        return ""
    rows: dict = {}
    for c in claims:  # one row per claim and dataset, one column per metric: "verdict: difference [interval]"
        row = rows.setdefault((c["text"], c.get("dataset")), {"claim": c["text"], "dataset": c.get("dataset") or "–",
                                                             "compared": c.get("compared", "–")})
        if c.get("compared"):
            row["compared"] = c["compared"]
        if "trr_tested" in c or "trr_seed" in c:  # a claim about a variant: the compression it was tested at
            row["TRR here / seed's (%)"] = f"{num(c.get('trr_tested'), 1)} / {num(c.get('trr_seed'), 1)}"
        value = c["verdict"]
        if c.get("estimate") is not None:
            value += f": {with_ci(c['estimate'], c['ci_low'], c['ci_high'], 3, True)}"
        if c.get("reading"):  # not significant: equivalent within ±δ, or too small to see (MDD)
            value += f" — {c['reading']}"
        row[label(c["metric"]) if c.get("metric") else "this run"] = value
    rows = list(rows.values())
    spread = summary.get("paper_replicate_spread", {})
    at_scale = (f"The published claims come from a larger study; here they are tested at this run's scale ("
                f"{html.escape(scale)}). A claim these runs do not support may still hold at the study's scale. ")
    return section("claims", "What these runs support", note(
        (at_scale if scale else "") + "Each published claim becomes a difference between two cells of this "
        "run's tables. <b>supported</b>: its 95% interval lies on the claimed side of zero; <b>contradicted</b>: "
        "on the other side; <b>not significant</b>: it spans zero, read further as <i>equivalent within ±δ</i> "
        "(the 90% interval inside the metric's equivalence margin) or <i>too small to see with these seeds</i> "
        "(with the smallest difference the comparison could detect); <b>not tested</b>: this run lacks the cells; "
        "<b>TRR here / seed's</b>: how strongly this run's variant compressed the text, beside the seed study's "
        "(a claim about l1 at TRR 35% says little about an l1 that compressed to 60%); "
        "<b>judge uninformative</b>: the judge failed its controls on that dataset (it could not tell a "
        "known-right answer from a known-wrong one), so its scores test nothing. The claims carried no "
        "interval; the study's own replicate runs of one setting (r16, 500 items, original text) scored "
        f"{', '.join(f'{v:.3f}' for v in spread.get('values', []))}: a spread of {num(spread.get('range'), 3)} on "
        "its 1–5 scale, as large as several of the differences it reports (e.g. 2.247 vs 2.212 = 0.035)."),
        table_html(pd.DataFrame(rows), 3),
        *(chance_note(m) for m in CHANCE_NOTES if m in {c.get("metric") for c in claims}))


def adapters_section(runs: pd.DataFrame, summary: dict) -> str:
    if runs.empty:
        return ""
    shown = ["dataset", "run_id", "inert", "changed_answers_pct", "loglik_gain", "loglik_gain_ci_low",
             "loglik_gain_ci_high", "truncated_pct", "self_check_agreement", "train_optimizer_steps",
             "train_warmup_steps", "train_lr_reached_peak", "train_tokens_seen", "train_loss_first", "train_loss_last",
             "train_lora_scaling"]
    frame = runs[[c for c in shown if c in runs]]
    inert = runs[runs.get("inert", pd.Series(False, index=runs.index)).fillna(False).astype(bool)]
    verdict = (f'<p class="warn">{len(inert)} inert adapter(s): {", ".join(inert["run_id"])} — they changed no answer '
               "and no log-likelihood; their scores say nothing about their condition.</p>") if len(inert) else \
        '<p class="ok">No adapter is inert: every one changed answers or answer log-likelihoods against the baseline.</p>'
    return section("adapters", "Adapters that learned", note(
        "Every adapter against the untuned baseline on the same questions: the share of answers that differ and the "
        "change in answer log-likelihood (nats/token, 95% interval). <b>inert</b> = no answer and no log-likelihood "
        "changed. self_check_agreement: share of a sample of the chunk's answers that agree through the other "
        "backend (vLLM against transformers + peft): identical, or parting at a near-tie (at the first differing "
        "token the two candidates are within evaluate.self_check.tie_nats for the checking backend); below the "
        "configured minimum the evaluate job fails. "
        "truncated_pct: answers cut at evaluate.max_tokens. Training: optimizer steps actually taken, warm-up steps, "
        "tokens trained (every token of every item: long items are cut into pieces, never truncated)."),
        verdict, table_html(frame, 3))


def trr_section(trr: pd.DataFrame, items: pd.DataFrame) -> str:
    import seaborn as sns

    parts = [note("TRR = 100 × (1 − compressed / original length), in %, by characters unless named. trr_mean: mean of "
                  "the items' TRRs; trr_pooled: 100 × (1 − total compressed / total original), what the training set "
                  "lost. off_target_share: replies outside their level's band (target ± tolerance) after one retry; "
                  "over_compressed_share: those past the band's upper end. Retention: ROUGE recall of the original, "
                  "and sacrebleu's n-gram precisions of the compressed text against it (BLEU's brevity penalty would "
                  "only restate the TRR)."), table_html(trr)]
    for dataset, holds in level_order_holds(trr).items():
        if not holds:
            parts.append(f'<p class="warn">{html.escape(dataset)}: TRR does not rise strictly from l1 to l5 — '
                         "the model did not hold every compression level apart.</p>")
    grid = sns.catplot(data=items, x="variant", y="trr_chars", col="dataset", kind="box",
                       order=order_by_trr(items["variant"].unique(), items.groupby("variant")["trr_chars"].mean().to_dict()),
                       height=3.4, aspect=1.4)
    grid.set_xticklabels(rotation=35, ha="right")
    grid.set_axis_labels("", "TRR (%)")
    parts.append(figure_html(grid.figure, "TRR distribution per variant"))
    return section("trr", "Text reduction rate (TRR)", *parts)


def decomposition_section(decomposition: dict[str, pd.DataFrame]) -> str:
    import matplotlib.pyplot as plt

    if not decomposition:
        return ""
    parts = [note("Where the knowledge went, per variant. <b>fact survival</b>: share of questions whose reference "
                  "answer is still stated in the compressed text of its item(s) (SQuAD-normalised); <b>open book</b>: "
                  "the untuned model answering with that text in its prompt, the ceiling of what the text still holds; "
                  "<b>closed book</b>: the adapter trained on that text (the compression experiment). A gap between "
                  "fact survival and open book is the reader's; between open and closed book, training's; a fall of "
                  "fact survival with TRR is compression's. Intervals: 95%; fact survival's is Wilson's interval for a "
                  "share (it stays honest at 0% and 100%, where resampling questions would give a single point), "
                  "the others bootstrap over questions.")]
    fig, axes = plt.subplots(len(decomposition), 2, figsize=(12, 4.4 * len(decomposition)), squeeze=False)
    for (dataset, table), (left, right) in zip(decomposition.items(), axes):
        rows = []
        for _, r in table.iterrows():
            rows.append({"variant": r["variant"], "TRR %": num(r.get("trr_mean"), 1),
                         "fact survival %": with_ci(r.get("fact_survival"), r.get("fact_survival_ci_low"),
                                                    r.get("fact_survival_ci_high"), 1),
                         **{f"{book} {label(m)}": with_ci(r.get(f"{book.replace(' ', '_')}_{m}"),
                                                          r.get(f"{book.replace(' ', '_')}_{m}_ci_low"),
                                                          r.get(f"{book.replace(' ', '_')}_{m}_ci_high"))
                            for m in ("f1", "answer_loglik") for book in ("open book", "closed book")}})
        parts += [f"<h3>{html.escape(dataset)}</h3>", table_html(pd.DataFrame(rows))]
        data = table[table["variant"] != BASELINE]
        x = range(len(data))
        for column, name in (("fact_survival", "fact survival %"), ("open_book_f1", "open book F1"),
                             ("closed_book_f1", "closed book F1")):
            if column in data:
                left.errorbar(list(x), data[column], yerr=[data[column] - data[f"{column}_ci_low"],
                                                           data[f"{column}_ci_high"] - data[column]],
                              marker="o", capsize=3, label=name)
        for column, name in (("open_book_answer_loglik", "open book"), ("closed_book_answer_loglik", "closed book")):
            if column in data:
                right.errorbar(list(x), data[column], yerr=[data[column] - data[f"{column}_ci_low"],
                                                            data[f"{column}_ci_high"] - data[column]],
                               marker="o", capsize=3, label=name)
        base = table[table["variant"] == BASELINE]
        if len(base) and "closed_book_answer_loglik" in base:
            right.axhline(float(base["closed_book_answer_loglik"].iloc[0]), ls="--", color="grey", label="baseline")
        for ax, ylabel in ((left, "% / F1"), (right, "answer log-likelihood (nats/token)")):
            ax.set_xticks(list(x), [f"{v} ({t:.0f}%)" for v, t in zip(data["variant"], data["trr_mean"])], fontsize=7,
                          rotation=30, ha="right")
            ax.set(title=dataset, ylabel=ylabel)
            ax.legend(fontsize=8)
    parts.append(figure_html(fig, "decomposition: fact survival, open book, closed book per variant"))
    return section("decomposition", "Where the knowledge went", *parts)


def compression_section(tables: dict[str, pd.DataFrame], trr: pd.DataFrame, summary: dict) -> str:
    import matplotlib.pyplot as plt

    if not tables:
        return ""
    parts = [note(FACT_NOTE + " Score = mean over questions and seeds, with its 95% interval (t over seeds, paired "
                  "questions). " + SIG_NOTE + " Forgetting = the control (general-knowledge) set's change against the "
                  "baseline.")]
    for dataset, table in tables.items():
        s = summary["datasets"].get(dataset, {})
        trr_of = trr[trr["dataset"] == dataset].set_index("variant")
        parts.append(f"<h3>{html.escape(dataset)}</h3>")
        if s.get("kind") == "longmemeval":
            parts.append(note("LongMemEval's headline metric is the judge's accuracy; token F1 against an abstention "
                              "explanation or a preference rubric means little. Training set: " +
                              html.escape(s.get("training_set", ""))))
        for metric in [*s.get("metrics", []), "control_f1", "control_loglik"]:
            rows_of = table[table["metric"] == metric]
            if rows_of.empty:
                continue
            rows = [{"condition": r["condition"],
                     **lead_cells(r, trr_of["trr_mean"].get(r["condition"]) if "trr_mean" in trr_of else None),
                     "score [95% CI]": with_ci(r["score"], r["ci_low"], r["ci_high"]),
                     "seed sd": num(r.get("seed_sd")), "question se": num(r.get("question_se")),
                     "Δ vs baseline": delta(r, "vs_baseline"),
                     "if no difference from baseline": if_no_difference(r, "vs_baseline"),
                     "Δ vs original": delta(r, "vs_original"),
                     "if no difference from original": if_no_difference(r, "vs_original")}
                    for _, r in rows_of.iterrows()]
            trained = rows_of[rows_of["condition"] != BASELINE]
            flagged = trained[trained["vs_baseline_sig_holm"].map(is_true)] if "vs_baseline_sig_holm" in trained else []
            verdict = (f'<p class="note">{label(metric)}: no condition differs from the baseline beyond chance '
                       "(Holm) — on this metric these runs cannot separate the conditions.</p>") if len(flagged) == 0 \
                else ""
            warn = ""
            if judge_says_nothing(s, metric):
                warn, verdict = ('<p class="warn">The judge failed its controls on this dataset (it could not tell a '
                                 "known-right answer from a known-wrong one): these scores say nothing about the "
                                 "conditions.</p>"), ""
            parts += [f"<h4>{html.escape(label(metric))}</h4>", warn, chance_note(metric), table_html(pd.DataFrame(rows)), verdict]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, pick in zip(axes, ("headline", "answer_loglik")):
        for dataset, table in tables.items():
            metric = summary["datasets"].get(dataset, {}).get("headline") if pick == "headline" else pick
            data = table[table["metric"] == metric].drop(columns=["trr_mean"], errors="ignore").merge(
                trr[trr["dataset"] == dataset], left_on="condition", right_on="variant")
            if data.empty:
                continue
            ax.errorbar(data["trr_mean"], data["score"], yerr=[data["score"] - data["ci_low"], data["ci_high"] - data["score"]],
                        fmt="o", capsize=3, label=f"{dataset} ({metric})")
            base = table[(table["metric"] == metric) & (table["condition"] == BASELINE)]
            if len(base):
                ax.axhline(float(base["score"].iloc[0]), ls="--", lw=1, color="grey")
        ax.set(xlabel="mean TRR (%)", ylabel="score", title=f"{'headline metric' if pick == 'headline' else label(pick)} "
               "against TRR (dashed: baseline)")
        ax.legend(fontsize=8)
    parts.append(figure_html(fig, "score against TRR"))
    parts.append(note("Left, each dataset's headline metric: " + "; ".join(
        f"{html.escape(dataset)}: {html.escape(headline_caption(summary['datasets'].get(dataset, {})))}"
        for dataset in tables) + ". Right: " + html.escape(label("answer_loglik")) + "."))
    return section("compression", "Compression: what an adapter learns from each variant", *parts)


def headline_caption(s: dict) -> str:
    """Which metric a dataset's headline plot shows, and why."""
    if not s.get("headline"):
        return "none plotted — " + s.get("headline_why", "no metric")
    return label(s["headline"]) + (f" — {s['headline_why']}" if s.get("headline_why") else "")


def capacity_section(tables: dict[str, pd.DataFrame], summary: dict) -> str:
    import matplotlib.pyplot as plt

    if not tables:
        return ""
    parts = [note("original_text trained on the first N items (items 0 = baseline). Two curves: <b>all</b> questions "
                  "(the paper's: it rises partly because more items are simply covered) and <b>trained</b>: each tier "
                  "scored only on the questions of the items it was trained on (retention). Peak and knee are found on "
                  "trained tiers only, each with the 95% interval of its bootstrap replicates. " + SIG_NOTE)]
    for dataset, table in tables.items():
        s = summary["datasets"].get(dataset, {})
        metrics = [m for m in (s.get("headline"), "answer_loglik") if m and m in set(table["metric"])]
        fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 3.6), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            for curve, part in table[table["metric"] == metric].groupby("curve"):
                ax.errorbar(part["items"], part["score"], yerr=[part["score"] - part["ci_low"], part["ci_high"] - part["score"]],
                            marker="o", capsize=3, label=f"{curve} questions")
            cap = s.get("capacity", {}).get(metric, {}).get("all", {})
            if cap.get("peak_items") is not None:
                ax.axvline(cap["peak_items"], color="tab:green", ls="--", label=f"peak ({cap['peak_items']})")
            if cap.get("knee_items") is not None:
                ax.axvline(cap["knee_items"], color="tab:red", ls=":", label=f"knee ({cap['knee_items']:g})")
            ax.set(title=f"{dataset}: {label(metric)}", xlabel="items trained on", ylabel=metric)
            ax.legend(fontsize=8)
            rows = [{"curve": r["curve"], "items": int(r["items"]), "score [CI]": with_ci(r["score"], r["ci_low"], r["ci_high"]),
                     "seed sd": num(r.get("seed_sd")), "question se": num(r.get("question_se")),
                     "n questions": r["n_questions"], "Δ vs baseline": delta(r, "vs_baseline"),
                     "Δ vs previous tier": delta(r, "vs_previous"),
                     "if no difference from previous": if_no_difference(r, "vs_previous")}
                    for _, r in table[table["metric"] == metric].iterrows()]
            summary_rows = []
            for curve, c in s.get("capacity", {}).get(metric, {}).items():
                if c:
                    summary_rows.append({"curve": curve, "peak": c.get("peak_items"),
                                         "peak 95% interval": f"[{num(c.get('peak_ci_low'), 0)}, {num(c.get('peak_ci_high'), 0)}]",
                                         "knee": num(c.get("knee_items"), 0),
                                         "knee 95% interval": f"[{num(c.get('knee_ci_low'), 0)}, {num(c.get('knee_ci_high'), 0)}]",
                                         "replicates with a knee": num(100 * c["knee_found_share"], 0) + "%"
                                         if c.get("knee_found_share") is not None else "–"})
            parts += [f"<h3>{html.escape(dataset)}: {html.escape(label(metric))}</h3>", chance_note(metric),
                      table_html(pd.DataFrame(rows)), table_html(pd.DataFrame(summary_rows))]
        parts.append(figure_html(fig, f"{dataset} capacity curves"))
    return section("capacity", "Capacity: where adding knowledge stops helping", *parts)


def rank_section(items_tables: dict, compression_tables: dict, summary: dict, metadata: dict) -> str:
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not items_tables and not compression_tables:
        return ""
    scaling = metadata.get("train", {})
    parts = [note(f"Score per LoRA rank. LoRA scaling in these grids: <b>{html.escape(str(scaling.get('scaling')))}</b> "
                  f"(alpha {scaling.get('alpha')}: fixed = alpha/r, so a lower rank also gets a larger update scale; "
                  "proportional = alpha grows with r, equal scale at every rank; rslora = alpha/√r). " + SIG_NOTE +
                  " Δ vs top rank: the difference to the grid's highest rank in the same row.")]
    for title, tables, index in (("rank × items", items_tables, "items"), ("rank × compression", compression_tables, "condition")):
        for dataset, table in tables.items():
            s = summary["datasets"].get(dataset, {})
            for metric in [m for m in (s.get("headline"), "answer_loglik") if m in set(table["metric"])]:
                part = table[table["metric"] == metric]
                grid = part.pivot(index=index, columns="rank", values="score")
                if index == "condition":
                    rates = part.groupby("condition")["trr_mean"].first().to_dict() if "trr_mean" in part else None
                    grid = grid.reindex(order_by_trr(grid.index, rates))
                fig, ax = plt.subplots(figsize=(1.6 + 1.3 * grid.shape[1], 0.6 + 0.5 * len(grid)))
                sns.heatmap(grid.astype(float), annot=True, fmt=".2f", cmap="viridis", ax=ax, cbar_kws={"label": metric})
                ax.set(title=f"{dataset}: {title}, {metric}", xlabel="rank", ylabel=index)
                rows = [{index: r[index], "rank": int(r["rank"]), "score [CI]": with_ci(r["score"], r["ci_low"], r["ci_high"]),
                         "seed sd": num(r.get("seed_sd")), "question se": num(r.get("question_se")),
                         "Δ vs baseline": delta(r, "vs_baseline"), "Δ vs top rank": delta(r, "vs_top_rank"),
                         "if no difference from top rank": if_no_difference(r, "vs_top_rank")}
                        for _, r in part.iterrows()]
                parts += [f"<h3>{html.escape(dataset)}: {title}, {html.escape(label(metric))}</h3>",
                          chance_note(metric), figure_html(fig, f"{dataset} {title}"), table_html(pd.DataFrame(rows))]
    for dataset, s in summary["datasets"].items():
        for metric, rec in s.get("rank_recommendation", {}).items():
            if not rec.get("available"):
                continue
            lines = ", ".join(f"r={r}: {v['a']:.3f} {v['c']:+.4f}·TRR" for r, v in rec["lines"].items())
            parts.append(f"<h3>{html.escape(dataset)}: fitted recommendation, {html.escape(label(metric))}</h3>"
                         f"<p>{html.escape(rec['relation'])}: {html.escape(lines)}; R² = {num(rec['r2'], 3)}. Measured "
                         f"TRR levels: {', '.join(num(t, 1) for t in rec['trr_measured'])}. Bands outside them get no "
                         f"recommendation ({', '.join(rec['bands_outside_data']) or 'none'})"
                         + (f"; ranks without two TRR levels left out: {rec['dropped_ranks']}" if rec["dropped_ranks"] else "")
                         + ".</p>" + chance_note(metric))
            bands = pd.DataFrame([{"TRR band %": b["trr_band"], "compared at TRR": num(b["trr_at"], 1),
                                   "best": f"r={b['best_rank']}", "runner-up": f"r={b['runner_up']}",
                                   "lead [95% CI]": with_ci(b["rank_effect"], b["rank_effect_ci_low"],
                                                            b["rank_effect_ci_high"], 3, True),
                                   "replicates where best": f"{100 * b['best_rank_share']:.0f}%",
                                   "answer": b["verdict"] + (" (from the fitted lines alone: no measured TRR level "
                                                             "in this band)" if b.get("interpolated") else "")}
                                  for b in rec["bands"]])
            parts.append(table_html(bands, 3))
            if any(b.get("interpolated") for b in rec["bands"]):
                parts.append(note("A band marked 'from the fitted lines alone' holds none of the measured TRR "
                                  "levels: its answer is an interpolation of the lines, not a measurement."))
    return section("rank", "Which rank fits which compression", *parts)


def judge_section(scores: pd.DataFrame, summary: dict) -> str:
    part = scores[scores["metric"].str.startswith("judge_") & (scores["experiment"] == "compression")]
    if part.empty:
        return ""
    parts = [note("Wiki: the 1–5 rubric (judge_score = the most probable grade; judge_expected = the grade averaged "
                  "over the judge's probabilities, G-Eval style). LongMemEval: yes/no accuracy (%) per question type, "
                  "task-averaged (mean of the six official types; not available when one is missing), overall, and "
                  "abstention accuracy, counted as the benchmark's print_qa_metrics.py does: every question counts, a "
                  "reply without a readable verdict as wrong (judge_unparsed_pct = their share). judge_p_yes = the "
                  "judge's mean probability of yes (constrained judges only). Numbers to cite beside the published "
                  "ones need the official judge (gpt-4o-2024-08-06) and the official templates (judge.templates).")]
    for dataset, rows in part.groupby("dataset"):
        wide = rows.pivot_table(index="condition", columns="metric", values="value", dropna=False).reset_index()
        wide.columns = [c[len("judge_accuracy["):-1] if c.startswith("judge_accuracy[") else c for c in wide.columns]
        s = summary["datasets"].get(dataset, {})
        judge = s.get("judge")
        wide.insert(1, "judge", "self-judge" if judge and judge.get("self_judge") else
                    (judge["model"] if judge else "–"))
        cls = "warn" if judge and judge.get("self_judge") else "note"
        text = f'<p class="{cls}">Graded by {html.escape(judge_description(judge))}.</p>'
        task_average = s.get("task_average")
        if task_average:
            text += note("Task-averaged accuracy: " + html.escape(task_average["note"]) + ".")
        controls = s.get("judge_controls", {})
        if controls.get("available"):
            cls = "ok" if controls["informative"] else "warn"
            text += (f'<p class="{cls}">Judge controls: {num(controls["accuracy"], 0)}% right '
                     f"(reference passed {num(controls['reference_pass_pct'], 0)}%, known-wrong answer rejected "
                     f"{num(controls['wrong_rejected_pct'], 0)}%); its verdict on the reference exceeds that on the wrong "
                     f"answer by {with_ci(controls['discrimination'], controls['discrimination_ci_low'], controls['discrimination_ci_high'], 2, True)} "
                     f"(0–1 scale). {'The judge tells right from wrong.' if controls['informative'] else 'The judge cannot tell right from wrong: its verdicts here are uninformative.'}</p>")
        keep = [c for c in wide.columns if c == "judge_task_avg_accuracy" or wide[c].notna().any()]  # NaN: not available
        parts += [f"<h3>{html.escape(dataset)}</h3>", text, table_html(wide[keep])]
    return section("judge", "LLM judge and LongMemEval accuracy per question type", *parts)


def cost_section(benchmarks: list[tuple[str, str, str]]) -> str:
    rows = []
    for stage, job, path in benchmarks:
        frame = pd.read_csv(path, sep="\t")
        rows.append({"stage": stage, "job": job, "wall s": frame["s"].mean(), "CPU s": frame["cpu_time"].mean(),
                     "peak memory MB": frame["max_rss"].mean()})
    if not rows:
        return ""
    jobs = pd.DataFrame(rows).sort_values(["stage", "job"])
    per_stage = jobs.groupby("stage").agg(jobs=("job", "count"), wall_s=("wall s", "sum"), cpu_s=("CPU s", "sum"),
                                          peak_memory_mb=("peak memory MB", "max")).reset_index()
    top = jobs.sort_values("wall s", ascending=False).head(5)
    return section("cost", "Cost", note("From Snakemake <code>benchmark:</code> files of this run's jobs: wall-clock and "
                                        "CPU seconds, peak resident memory. GPU seconds equal wall seconds on GPU jobs."),
                   table_html(per_stage, 1), "<h3>Top five jobs by wall time</h3>", table_html(top, 1),
                   "<details><summary>Every job</summary>" + table_html(jobs, 1) + "</details>")


def metadata_section(metadata: dict) -> str:
    hardware = metadata.get("hardware", {})
    meta = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git commit": git_commit(),
            "compute dtype": f"{metadata.get('dtype')} (model.dtype {metadata.get('config', {}).get('model', {}).get('dtype')}: "
                             f"{metadata.get('dtype_reason')})",
            "CPU": f"{hardware.get('cpu_model')}; flags {', '.join(hardware.get('cpu_flags', [])) or 'none of note'}",
            "GPU": f"{hardware.get('gpu_name')} (compute capability {hardware.get('gpu_capability')})"
            if hardware.get("gpu_name") else "none",
            "evaluation backend": metadata.get("backend"),
            "seeds": ", ".join(map(str, metadata.get("config", {}).get("train", {}).get("seeds", []))),
            "LoRA scaling": metadata.get("config", {}).get("train", {}).get("scaling"),
            "code fingerprints": ", ".join(f"{k} {v}" for k, v in metadata.get("fingerprints", {}).items()),
            **package_versions()}
    frame = pd.DataFrame({"what": list(meta), "value": [str(v) for v in meta.values()]})
    return section("metadata", "Run metadata", table_html(frame),
                   "<details><summary>Config (all but resources)</summary><pre>"
                   + html.escape(json.dumps(metadata.get("config", {}), indent=2, sort_keys=True)) + "</pre></details>")


# ---------------------------------------------------------------- page
def build_report(inputs: dict, metadata: dict, out_html: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    trr, items, scores = pd.read_csv(inputs["trr"]), pd.read_csv(inputs["trr_items"]), pd.read_csv(inputs["scores"])
    runs = pd.read_csv(inputs["runs"])
    summary = read_json(inputs["summary"])
    mark_judge(summary)
    tables: dict[str, dict[str, pd.DataFrame]] = {}
    for experiment, dataset, path in inputs["tables"]:
        tables.setdefault(experiment, {})[dataset] = pd.read_csv(path)
    decomposition = {dataset: pd.read_csv(path) for dataset, path in inputs["decomposition"]}
    config = metadata.get("config", {})
    scale = scale_sentence(summary, config.get("model", {}).get("base"))
    sections = [
        answers_section(summary, tables.get("compression", {})),
        claims_section(summary, scale),
        adapters_section(runs, summary),
        trr_section(trr, items),
        decomposition_section(decomposition),
        compression_section(tables.get("compression", {}), trr, summary),
        capacity_section(tables.get("capacity", {}), summary),
        rank_section(tables.get("rank_items", {}), tables.get("rank_compression", {}), summary, metadata.get("config", {})),
        judge_section(scores, summary),
        cost_section(inputs["benchmarks"]),
        metadata_section(metadata),
    ]
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("answers", "answers"), ("claims", "claims"), ("adapters", "adapters"), ("trr", "TRR"),
        ("decomposition", "decomposition"), ("compression", "compression"), ("capacity", "capacity"),
        ("rank", "rank"), ("judge", "judge"), ("cost", "cost"), ("metadata", "metadata")))
    head = (f"<h1>lorapress report</h1><p class='note'>How much can a LoRA adapter learn from compressed text, and "
            f"which rank fits which compression? Base model <code>{html.escape(str(config.get('model', {}).get('base')))}"
            f"</code> computing in {html.escape(str(metadata.get('dtype')))}; datasets "
            f"{', '.join(html.escape(d) for d in summary['datasets'])}.</p>"
            f"<p><b>Scale of this run</b>: {html.escape(scale)}. Every answer below holds at this scale only.</p>"
            f"<nav>{nav}</nav>")
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>lorapress report</title>"
            f"<style>{CSS}</style></head><body>{head}{''.join(sections)}</body></html>")
    with atomic_path(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")


# ---------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress report")
    parser.description = "write the self-contained HTML report"
    parser.add_argument("--trr", required=True)
    parser.add_argument("--trr-items", required=True)
    parser.add_argument("--scores", required=True)
    parser.add_argument("--runs", required=True, help="per-run diagnostics from aggregate")
    parser.add_argument("--summary", required=True, help="summary.json from aggregate")
    parser.add_argument("--table", nargs=3, action="append", default=[], metavar=("EXPERIMENT", "DATASET", "FILE"))
    parser.add_argument("--decomposition", nargs=2, action="append", default=[], metavar=("DATASET", "FILE"))
    parser.add_argument("--benchmark", nargs=3, action="append", default=[], metavar=("STAGE", "JOB", "FILE"),
                        help="a Snakemake benchmark file of this run's jobs, for the cost table")
    parser.add_argument("--metadata", type=parse_json_arg, default={},
                        help="config (without resources), resolved dtype and why, hardware, backend, as JSON")
    parser.add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    build_report({"trr": args.trr, "trr_items": args.trr_items, "scores": args.scores, "runs": args.runs,
                  "summary": args.summary, "tables": args.table, "decomposition": args.decomposition,
                  "benchmarks": args.benchmark}, args.metadata, args.out)
