"""Stage `report`: one self-contained HTML page (plots embedded as PNG data URIs)."""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import SUMMARY_LEVELS, VARIANTS
from .io import atomic_path, git_commit, package_versions
from .stats import level_order_holds

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border-top:1px solid #ddd;border-bottom:1px solid #ddd;padding:.3em .7em;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #444}
.note{color:#555;font-size:.9em}.warn{color:#a33;font-weight:bold}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em}
img{max-width:100%}
"""


def figure_html(fig, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table_html(frame: pd.DataFrame, digits: int = 2) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.{digits}f}", na_rep="–", border=0)


def _variant_order(values) -> list[str]:
    order = ["baseline", *VARIANTS]
    return sorted(values, key=lambda v: order.index(v) if v in order else len(order))


def trr_section(trr: pd.DataFrame, items: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    parts = ["<h2>Text reduction rate (TRR)</h2>",
             '<p class="note">TRR = 100 × (1 − compressed / original length), in %, by characters unless named; '
             "retention = ROUGE recall and BLEU of the compressed text against its original.</p>",
             table_html(trr)]
    for dataset, holds in level_order_holds(trr).items():
        if not holds:
            parts.append(f'<p class="warn">{html.escape(dataset)}: TRR does not rise strictly from l1 to l5 — '
                         "the model did not hold every compression level apart.</p>")
    grid = sns.catplot(data=items, x="variant", y="trr_chars", col="dataset", kind="box",
                       order=_variant_order(items["variant"].unique()), height=3.6, aspect=1.4)
    grid.set_xticklabels(rotation=35, ha="right")
    grid.set_axis_labels("", "TRR (%)")
    parts.append(figure_html(grid.figure, "TRR distribution per variant"))
    return "\n".join(parts)


def compression_section(tables: dict[str, pd.DataFrame], trr: pd.DataFrame, metric: str) -> str:
    import seaborn as sns
    import matplotlib.pyplot as plt

    parts = [f"<h2>Compression: score ({html.escape(metric)}) per condition</h2>",
             '<p class="note">Δ in % of the baseline (untuned model) and of <code>original_text</code>.</p>']
    points = []
    for dataset, table in tables.items():
        parts += [f"<h3>{html.escape(dataset)}</h3>", table_html(table)]
        merged = table.merge(trr[trr["dataset"] == dataset], left_on="condition", right_on="variant")
        points.append(merged.assign(dataset=dataset))
    if points:
        data = pd.concat(points)
        fig, ax = plt.subplots(figsize=(7, 4))
        sns.scatterplot(data=data, x="trr_mean", y="score", hue="dataset", style="condition", s=80, ax=ax)
        for dataset, table in tables.items():
            base = table.loc[table["condition"] == "baseline", "score"]
            if len(base):
                ax.axhline(float(base.iloc[0]), ls="--", lw=1, color="grey")
        ax.set(xlabel="mean TRR (%)", ylabel=metric, title="Score against text reduction (dashed: baseline)")
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
        parts.append(figure_html(fig, "score against TRR"))
    return "\n".join(parts)


def judge_section(scores: pd.DataFrame) -> str:
    part = scores[scores["metric"].str.startswith("judge_") & (scores["experiment"] == "compression")]
    if part.empty:
        return ""
    wide = part.pivot_table(index=["dataset", "condition"], columns="metric", values="value").reset_index()
    return ("<h2>LLM judge</h2>"
            '<p class="note">Wiki: mean 1–5 rubric score. LongMemEval: yes/no accuracy per question type, '
            "task-averaged and abstention accuracy (%). <code>judge_unparsed_pct</code>: judgements that were not "
            "a valid score, left out of the means, never defaulted.</p>" + table_html(wide))


def metadata_section(config: dict) -> str:
    versions = package_versions()
    meta = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_commit": git_commit()}
    return ("<h2>Run metadata</h2>" + table_html(pd.DataFrame([{**meta, **versions}]).T.reset_index()
                                               .rename(columns={"index": "what", 0: "value"}))
            + "<details><summary>Config</summary><pre>" + html.escape(json.dumps(config, indent=2, sort_keys=True))
            + "</pre></details>")


def build_report(trr_csv: str, trr_items_csv: str, scores_csv: str, compression_csvs: list[str],
                 metric: str, config: dict, out_html: str) -> None:
    trr = pd.read_csv(trr_csv)
    items = pd.read_csv(trr_items_csv)
    scores = pd.read_csv(scores_csv)
    tables = {Path(p).stem.removeprefix("compression_"): pd.read_csv(p) for p in compression_csvs}
    body = [
        "<h1>lorapress report</h1>",
        f'<p class="note">Base model <code>{html.escape(str(config.get("model", {}).get("base")))}</code>; '
        f"datasets {', '.join(html.escape(d) for d in tables)}; levels {', '.join(SUMMARY_LEVELS)}.</p>",
        trr_section(trr, items),
        compression_section(tables, trr, metric),
        judge_section(scores),
        metadata_section(config),
    ]
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>lorapress report</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    with atomic_path(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
