"""Stage `report`: one self-contained HTML page (plots embedded as PNG data URIs).

It answers the study's questions in order: how much each variant compresses
(TRR), what an adapter learns from each variant (compression), where adding
knowledge stops helping (capacity), which rank fits which compression (rank
grids and the fitted recommendation), what the adapters forget, what it cost,
and what produced it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import BASELINE, VARIANTS
from .experiments import EXPERIMENTS
from .io import atomic_path, git_commit, package_versions
from .stats import level_order_holds

CSS = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.88em}
th,td{border-top:1px solid #ddd;border-bottom:1px solid #ddd;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #444}
.note{color:#555;font-size:.9em}.warn{color:#a33;font-weight:bold}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em}img{max-width:100%}
nav a{margin-right:1em}
"""


# ---------------------------------------------------------------- helpers
def figure_html(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table_html(frame: pd.DataFrame, digits: int = 2) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.{digits}f}", na_rep="–", border=0, escape=True)


def _num(value, digits=2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _with_ci(row) -> str:
    """`score [low, high]` where a bootstrap CI exists."""
    text = _num(row["score"])
    if not pd.isna(row.get("ci_low", float("nan"))):
        text += f" [{_num(row['ci_low'])}, {_num(row['ci_high'])}]"
    return text


def _delta(row, prefix: str) -> str:
    pct = row.get(f"{prefix}_pct")
    if pct is None or pd.isna(pct):
        return "–"
    sig = row.get(f"{prefix}_sig")
    mark = "*" if sig is True or sig == "True" else ""
    return f"{pct:+.1f}%{mark}"


def _variant_order(values) -> list[str]:
    order = [BASELINE, *VARIANTS]
    return sorted(values, key=lambda v: order.index(v) if v in order else len(order))


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<h2 id="{anchor}">{html.escape(title)}</h2>' + "".join(p for p in parts if p)


def split_table_name(stem: str) -> tuple[str, str]:
    """`rank_items_wiki` -> (`rank_items`, `wiki`)."""
    for experiment in sorted(EXPERIMENTS, key=len, reverse=True):
        if stem.startswith(experiment + "_"):
            return experiment, stem[len(experiment) + 1:]
    raise ValueError(f"not a table name: {stem}")


# ---------------------------------------------------------------- sections
def summary_section(summary: dict) -> str:
    rows = []
    for dataset, s in summary.items():
        rec = s.get("rank_recommendation", {})
        bands = ", ".join(f"TRR {b['trr_band']}%: r={b['recommended_rank']}" for b in rec.get("bands", [])) \
            if rec.get("available") else rec.get("reason", "–")
        rows.append({"dataset": dataset, "metric": s.get("metric"), "best condition": s.get("best_condition", "–"),
                     "capacity peak (items)": s.get("capacity_peak_items", "–"),
                     "capacity knee (items)": s.get("capacity_knee_items") or "–",
                     "recommended rank": bands})
    return _section("answers", "The answers in one table", table_html(pd.DataFrame(rows)))


def trr_section(trr: pd.DataFrame, items: pd.DataFrame) -> str:
    import seaborn as sns

    parts = ['<p class="note">TRR = 100 × (1 − compressed / original length), in %, by characters unless named; '
             "off-target share = replies outside their level's band after one retry; retention = ROUGE recall and "
             "BLEU of the compressed text against its original.</p>", table_html(trr)]
    for dataset, holds in level_order_holds(trr).items():
        if not holds:
            parts.append(f'<p class="warn">{html.escape(dataset)}: TRR does not rise strictly from l1 to l5 — '
                         "the model did not hold every compression level apart.</p>")
    grid = sns.catplot(data=items, x="variant", y="trr_chars", col="dataset", kind="box",
                       order=_variant_order(items["variant"].unique()), height=3.4, aspect=1.4)
    grid.set_xticklabels(rotation=35, ha="right")
    grid.set_axis_labels("", "TRR (%)")
    parts.append(figure_html(grid.figure, "TRR distribution per variant"))
    return _section("trr", "Text reduction rate (TRR)", *parts)


def compression_section(tables: dict[str, pd.DataFrame], trr: pd.DataFrame, metric: str) -> str:
    import matplotlib.pyplot as plt
    import seaborn as sns

    parts = [f'<p class="note">Score = {html.escape(metric)} (mean over questions and seeds) with its bootstrap 95% CI '
             "over questions. Δ in % of the baseline (untuned model) and of <code>original_text</code>; * = the paired "
             "bootstrap CI of the difference excludes zero. Forgetting = change in the control (general-knowledge) "
             "score against the baseline, in points.</p>"]
    points = []
    for dataset, table in tables.items():
        trr_of = trr[trr["dataset"] == dataset].set_index("variant")["trr_mean"]
        rows = [{"condition": r["condition"], "TRR %": _num(trr_of.get(r["condition"], float("nan")), 1),
                 "score [95% CI]": _with_ci(r), "seed sd": _num(r.get("seed_sd")),
                 "Δ vs baseline": _delta(r, "vs_baseline"), "Δ vs original": _delta(r, "vs_original"),
                 "forgetting": _num(r.get("control_drop"))} for _, r in table.iterrows()]
        parts += [f"<h3>{html.escape(dataset)}</h3>", table_html(pd.DataFrame(rows))]
        points.append(table.merge(trr[trr["dataset"] == dataset], left_on="condition", right_on="variant")
                      .assign(dataset=dataset))
    if points:
        data = pd.concat(points)
        fig, ax = plt.subplots(figsize=(7, 4))
        sns.scatterplot(data=data, x="trr_mean", y="score", hue="dataset", style="condition", s=80, ax=ax)
        for _, row in data.iterrows():
            ax.plot([row["trr_mean"]] * 2, [row["ci_low"], row["ci_high"]], color="grey", lw=0.8)
        for dataset, table in tables.items():
            base = table.loc[table["condition"] == BASELINE, "score"]
            if len(base):
                ax.axhline(float(base.iloc[0]), ls="--", lw=1, color="grey")
        ax.set(xlabel="mean TRR (%)", ylabel=metric, title="Score against text reduction (dashed: baseline)")
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
        parts.append(figure_html(fig, "score against TRR"))
    return _section("compression", "Compression: what an adapter learns from each variant", *parts)


def capacity_section(tables: dict[str, pd.DataFrame], summary: dict, metric: str) -> str:
    import matplotlib.pyplot as plt

    if not tables:
        return ""
    parts = ['<p class="note">original_text trained on the first N items (items 0 = baseline), evaluated on the '
             "full question set. vs_previous = points gained over the previous tier (* = its CI excludes zero).</p>"]
    fig, axes = plt.subplots(1, len(tables), figsize=(5.5 * len(tables), 3.6), squeeze=False)
    for ax, (dataset, table) in zip(axes[0], tables.items()):
        ax.errorbar(table["items"], table["score"], yerr=[table["score"] - table["ci_low"], table["ci_high"] - table["score"]],
                    marker="o", capsize=3)
        s = summary.get(dataset, {})
        if s.get("capacity_peak_items") is not None:
            ax.axvline(s["capacity_peak_items"], color="tab:green", ls="--", label=f"peak ({s['capacity_peak_items']})")
        if s.get("capacity_knee_items") is not None:
            ax.axvline(s["capacity_knee_items"], color="tab:red", ls=":", label=f"knee ({s['capacity_knee_items']:g})")
        ax.set(title=dataset, xlabel="items trained on", ylabel=metric)
        ax.legend(fontsize=8)
        shown = table[["items", "score", "ci_low", "ci_high", "vs_baseline_pct", "vs_previous", "vs_previous_sig"]]
        parts += [f"<h3>{html.escape(dataset)}</h3>", table_html(shown)]
    parts.append(figure_html(fig, "capacity curves"))
    return _section("capacity", "Capacity: where adding knowledge stops helping", *parts)


def rank_section(items_tables: dict, compression_tables: dict, summary: dict, metric: str) -> str:
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not items_tables and not compression_tables:
        return ""
    parts = [f'<p class="note">Score ({html.escape(metric)}) per LoRA rank.</p>']
    for title, tables, index in (("rank × items", items_tables, "items"), ("rank × compression", compression_tables, "condition")):
        for dataset, table in tables.items():
            ranks = [c for c in table.columns if c.startswith("rank_") and c.count("_") == 1]
            grid = table.set_index(index)[ranks]
            fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(ranks), 0.6 + 0.5 * len(grid)))
            sns.heatmap(grid.astype(float), annot=True, fmt=".2f", cmap="viridis", ax=ax, cbar_kws={"label": metric})
            ax.set(title=f"{dataset}: {title}", xlabel="", ylabel=index)
            parts += [f"<h3>{html.escape(dataset)}: {title}</h3>", figure_html(fig, f"{dataset} {title}"), table_html(table)]
    for dataset, s in summary.items():
        rec = s.get("rank_recommendation", {})
        if not rec.get("available"):
            continue
        coef = rec["coefficients"]
        parts.append(f"<h3>{html.escape(dataset)}: fitted recommendation</h3><p>Fitted on {rec['n_points']} grid cells: "
                     f"<code>{html.escape(rec['relation'])}</code> with a = {coef['a']:.3f}, b = {coef['b']:.3f}, "
                     f"c = {coef['c']:.4f}, d = {coef['d']:.4f}; R² = {rec['r2']:.3f}. The gain from doubling the rank "
                     f"at a given TRR is b + d·TRR.</p>")
        bands = pd.DataFrame([{"TRR band %": b["trr_band"], "recommended rank": b["recommended_rank"],
                               "gain per rank doubling": b["gain_per_rank_doubling"],
                               **{f"predicted r={r}": v for r, v in b["predicted_scores"].items()}} for b in rec["bands"]])
        parts.append(table_html(bands, 3))
    return _section("rank", "Which rank fits which compression", *parts)


def judge_section(scores: pd.DataFrame) -> str:
    part = scores[scores["metric"].str.startswith("judge_") & (scores["experiment"] == "compression")]
    if part.empty:
        return ""
    tables = []
    for dataset, rows in part.groupby("dataset"):
        wide = rows.pivot_table(index="condition", columns="metric", values="value").reset_index()
        wide.columns = [c[len("judge_accuracy["):-1] if c.startswith("judge_accuracy[") else c for c in wide.columns]
        tables += [f"<h3>{html.escape(dataset)}</h3>", table_html(wide.dropna(axis=1, how="all"))]
    return _section("judge", "LLM judge and LongMemEval accuracy per question type",
                    '<p class="note">Wiki: mean 1–5 rubric score. LongMemEval: yes/no accuracy (%) per question type, '
                    "task-averaged (mean of the types), overall, and abstention accuracy, as the benchmark reports them. "
                    "<code>judge_unparsed_pct</code>: judgements that were not a valid verdict, left out of the means, "
                    "never defaulted.</p>", *tables)


def cost_section(benchmark_files: list[str]) -> str:
    rows = []
    for path in benchmark_files:
        parts = Path(path).parts
        stage_at = parts.index("benchmarks") + 1
        frame = pd.read_csv(path, sep="\t")
        rows.append({"stage": parts[stage_at], "job": "/".join(parts[stage_at + 1:]).removesuffix(".tsv"),
                     "wall s": frame["s"].mean(), "CPU s": frame["cpu_time"].mean(),
                     "peak memory MB": frame["max_rss"].mean()})
    if not rows:
        return ""
    jobs = pd.DataFrame(rows).sort_values(["stage", "job"])
    per_stage = jobs.groupby("stage").agg(jobs=("job", "count"), wall_s=("wall s", "sum"), cpu_s=("CPU s", "sum"),
                                          peak_memory_mb=("peak memory MB", "max")).reset_index()
    return _section("cost", "Cost", '<p class="note">From Snakemake <code>benchmark:</code> files (results/benchmarks/): '
                    "wall-clock and CPU seconds, peak resident memory. GPU seconds equal wall seconds on GPU jobs.</p>",
                    table_html(per_stage, 1), "<details><summary>Per job</summary>" + table_html(jobs, 1) + "</details>")


def metadata_section(config: dict) -> str:
    meta = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git commit": git_commit(),
            "seeds": ", ".join(map(str, config.get("train", {}).get("seeds", []))),
            "generation seed": config.get("generation", {}).get("seed"), **package_versions()}
    frame = pd.DataFrame({"what": list(meta), "value": [str(v) for v in meta.values()]})
    return _section("metadata", "Run metadata", table_html(frame),
                    "<details><summary>Config</summary><pre>" + html.escape(json.dumps(config, indent=2, sort_keys=True))
                    + "</pre></details>")


# ---------------------------------------------------------------- page
def build_report(trr_csv: str, trr_items_csv: str, scores_csv: str, table_csvs: list[str], summary_json: str,
                 metric: str, config: dict, out_html: str, benchmark_files: list[str] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    trr, items, scores = pd.read_csv(trr_csv), pd.read_csv(trr_items_csv), pd.read_csv(scores_csv)
    summary = json.loads(Path(summary_json).read_text())
    tables: dict[str, dict[str, pd.DataFrame]] = {e: {} for e in EXPERIMENTS}
    for path in table_csvs:
        experiment, dataset = split_table_name(Path(path).stem)
        tables[experiment][dataset] = pd.read_csv(path)
    sections = [
        summary_section(summary),
        trr_section(trr, items),
        compression_section(tables["compression"], trr, metric),
        capacity_section(tables["capacity"], summary, metric),
        rank_section(tables["rank_items"], tables["rank_compression"], summary, metric),
        judge_section(scores),
        cost_section(list(benchmark_files)),
        metadata_section(config),
    ]
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("answers", "answers"), ("trr", "TRR"), ("compression", "compression"), ("capacity", "capacity"),
        ("rank", "rank"), ("judge", "judge"), ("cost", "cost"), ("metadata", "metadata")))
    head = (f"<h1>lorapress report</h1><p class='note'>How much can a LoRA adapter learn from compressed text, and "
            f"which rank fits which compression? Base model <code>{html.escape(str(config.get('model', {}).get('base')))}"
            f"</code>; datasets {', '.join(html.escape(d) for d in tables['compression'])}.</p><nav>{nav}</nav>")
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>lorapress report</title>"
            f"<style>{CSS}</style></head><body>{head}{''.join(sections)}</body></html>")
    with atomic_path(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
