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
    bf16 = "with AVX512-BF16" if m.get("avx512_bf16") else "without AVX512-BF16"
    return f"{m['cores']} cores, {m['cpu']} ({bf16}), GPU: {m['gpu'] or 'none'}, Python {m['python']}"


def ci(values, digits=2):
    return f"[{values[0]:+.{digits}f}, {values[1]:+.{digits}f}]"


def main():
    out = []
    r = load("recipe")
    if r:
        out += ["## Choosing the embedded default's recipe", "", f"`{r['command']}` — {machine(r)}; "
                f"{r['questions']} wiki questions, one seed, 95% intervals over questions.", "",
                "| recipe (epochs:lr:modules) | train s | tokens/s | answer log-likelihood gain | margin gain |",
                "|---|---|---|---|---|"]
        out += [f"| {x['recipe']} | {x['train_s']:.0f} | {x['tokens_per_s']:.0f} | {x['loglik_gain']:+.3f} "
                f"{ci(x['loglik_gain_ci'], 3)} | {x['margin_gain']:+.3f} {ci(x['margin_gain_ci'], 3)} |" for x in r["rows"]]
        out.append("")
    r = load("adapters_per_engine")
    if r:
        out += ["## Adapters per vLLM engine start", "", f"`{r['command']}` — {machine(r)}; each adapter answers "
                f"{r['questions_per_adapter']} questions ({r['max_tokens']} tokens, {r['dtype']}); wall time includes "
                "engine starts; K separate starts = the sum of K single-adapter runs.", "",
                "| K adapters | one engine, K LoRARequests (s) | of which answering (s) | K separate starts (s) | "
                "speed-up | s per adapter answer |", "|---|---|---|---|---|---|"]
        out += [f"| {x['k']} | {x['one_engine_s']:.1f} | {x['one_engine_answering_s']:.1f} | {x['separate_starts_s']:.1f}"
                f" | {x['speedup']:.2f}× | {x['seconds_per_adapter_answer']:.3f} |" for x in r["rows"]]
        out.append("")
    r = load("backends")
    if r:
        b, s = r["backends"], r["summaries"]
        out += ["## vLLM against transformers + peft on this CPU", "", f"`{r['command']}` — {machine(r)}.", "",
                "| work | backend | start s | work s | per item | identical to the other backend |",
                "|---|---|---|---|---|---|"]
        for name in ("transformers", "vllm"):
            x = b[name]
            out.append(f"| {x['requests']} answers through {r['adapters']} adapters + the base model | {name} | "
                       f"{x['start_s']:.1f} | {x['answer_s']:.1f} | {x['s_per_answer']:.3f} s | "
                       f"{r['agreement']} of {r['compared']} |")
        for name in ("transformers", "vllm"):
            x = s[name]
            out.append(f"| {s['count']} summaries (l3 prompt) | {name} | {x['start_s']:.1f} | {x['generate_s']:.1f} | "
                       f"{x['generate_s'] / s['count']:.2f} s | {s['identical']} of {s['count']} |")
        out += ["", f"vLLM takes {r['vllm_over_transformers_answer_time']:.2f}× the time of transformers + peft to answer "
                "through adapters here.", ""]
    r = load("training")
    if r:
        out += ["## Packed against padded training rows", "", f"`{r['command']}` — {machine(r)}; {r['method']}, rank "
                f"{r['rank']}, batch {r['batch_size']}, max length {r['max_length']}.", "",
                "| texts | rows | trained tokens | tokens/s | train s | speed-up |", "|---|---|---|---|---|---|"]
        out += [f"| {x['texts']} | {'packed' if x['packing'] else 'padded'} | {x['tokens_seen']} | {x['tokens_per_s']:.0f} | "
                f"{x['train_s']:.1f} | {x.get('speedup_over_padded', 1.0):.2f}× |" for x in r["rows"]]
        out.append("")
    r = load("workflow_overhead")
    if r:
        p, e = r["paper_dry_run"], r["one_level_prompt_edit"]

        def jobs(x):
            return f"{x['rerun_jobs']} ({', '.join(f'{k} {v}' for k, v in x['reruns'].items())})"

        out += ["## Workflow overhead and precise reruns", "", f"`{r['command']}` — {machine(r)}; medians of "
                f"{len(p['times_s'])} runs; rerun counts from dry runs on the completed default run.", "",
                "| what | figure |", "|---|---|",
                f"| dry run of `config/paper.yaml` ({p['total_jobs']} jobs) | {p['median_s']:.2f} s |",
                f"| no-op dry run after the default run | {r['noop_dry_run']['median_s']:.2f} s |",
                f"| no-op run (`snakemake --cores 8`) after the default run | {r['noop_run']['median_s']:.2f} s |",
                f"| jobs rerun by editing one level's prompt (of {e['of_total']}) | {jobs(e)} |"]
        if "one_more_capacity_tier" in r:
            out.append(f"| jobs rerun by adding capacity tier N = 9 | {jobs(r['one_more_capacity_tier'])} |")
        for module, x in r.get("code_edits", {}).items():
            out.append(f"| jobs rerun by appending a function to `src/lorapress/{module}` | {jobs(x)} |")
        out += ["", "Paper DAG job counts: " + ", ".join(f"{k} {v}" for k, v in p["jobs"].items()) + ".", ""]
    r = load("longmemeval_memory")
    if r:
        out += ["## LongMemEval loader memory", "", f"`{r['command']}` — {machine(r)}; a synthetic file shaped like "
                f"`longmemeval_s_cleaned.json`: {r['questions']} questions × {r['sessions_per_question']} sessions, "
                f"{r['file_mb']:.0f} MB.", "", f"Peak resident memory of `lorapress prepare`: **{r['peak_rss_mb']:.0f} MB**; "
                f"wall time {r['wall']}.", ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
