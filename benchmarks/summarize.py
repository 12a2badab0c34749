"""Render the figures in benchmarks/results/*.json as the tables of BENCHMARKS.md.

    python benchmarks/summarize.py > /tmp/figures.md
"""

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def machine(r):
    m = r["machine"]
    return f"{m['cores']} cores ({m['cpu']}), GPU: {m['gpu'] or 'none'}, Python {m['python']}"


def main():
    out = []
    r = load("generation")
    if r:
        out += ["## Generation: vLLM against transformers", "", f"`{r['command']}` — {machine(r)}; "
                f"{r['prompts']} chat prompts, {r['max_tokens']} new tokens each, greedy, {r['dtype']}, "
                f"median of {r['runs']} runs.", "", "| engine | new tokens | median s | tokens/s |", "|---|---|---|---|"]
        for name in ("transformers", "vllm"):
            e = r[name]
            out.append(f"| {name} | {e['new_tokens']} | {e['median_s']:.2f} | {e['tokens_per_s']:.0f} |")
        out.append("")
    r = load("adapters_per_engine")
    if r:
        out += ["## Adapters per engine start", "", f"`{r['command']}` — {machine(r)}; each adapter answers "
                f"{r['questions_per_adapter']} questions ({r['max_tokens']} tokens); wall time includes engine "
                "starts; one run each (K separate starts = the sum of K single-adapter runs).", "",
                "| K adapters | one engine, K LoRARequests (s) | K separate starts (s) | speed-up |", "|---|---|---|---|"]
        out += [f"| {row['k']} | {row['one_engine_s']:.1f} | {row['separate_starts_s']:.1f} | {row['speedup']:.2f}× |"
                for row in r["rows"]]
        out.append("")
    r = load("training")
    if r:
        out += ["## Training throughput", "", f"`{r['command']}` — {machine(r)}; wiki sample original_text, rank "
                f"{r['rank']}, batch {r['batch_size']}, max length {r['max_length']}, one epoch.", "",
                "| method | batches | tokens/s (median) | train s |", "|---|---|---|---|"]
        out += [f"| {row['method']} | {'packed' if row['packing'] else 'padded'} | {row['tokens_per_s_median']:.0f} | "
                f"{row['train_s_median']:.1f} |" for row in r["rows"]]
        out.append("")
    r = load("workflow_overhead")
    if r:
        p, e = r["paper_dry_run"], r["one_level_prompt_edit"]
        out += ["## Workflow overhead", "", f"`{r['command']}` — {machine(r)}; medians of {len(p['times_s'])} runs.", "",
                "| what | figure |", "|---|---|",
                f"| dry run of `config/paper.yaml` ({p['total_jobs']} jobs) | {p['median_s']:.2f} s |",
                f"| no-op dry run after the default run | {r['noop_dry_run']['median_s']:.2f} s |",
                f"| no-op run (`snakemake --cores 8`) after the default run | {r['noop_run']['median_s']:.2f} s |",
                f"| jobs rerun by editing one level's prompt | {e['rerun_jobs']} of {e['of_total']} "
                f"({', '.join(f'{k} {v}' for k, v in e['reruns'].items())}) |", ""]
        out += ["Paper DAG job counts: " + ", ".join(f"{k} {v}" for k, v in p["jobs"].items()) + ".", ""]
    r = load("longmemeval_memory")
    if r:
        out += ["## LongMemEval loader memory", "", f"`{r['command']}` — {machine(r)}; a synthetic file shaped like "
                f"`longmemeval_s_cleaned.json`: {r['questions']} questions × {r['sessions_per_question']} sessions, "
                f"{r['file_mb']:.0f} MB.", "", f"Peak resident memory of `lorapress prepare`: **{r['peak_rss_mb']:.0f} MB**; "
                f"wall time {r['wall']}.", ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
