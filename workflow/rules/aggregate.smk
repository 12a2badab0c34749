# Stage aggregate: answers and verdicts -> per-question scores -> the study's tables, each number
# with its interval; diagnostics (inert adapters, self-checks, judge controls); the claims checked.
# The compressed variants' provenance says who compressed each one (the compression table's first column).


rule aggregate:
    input:
        answers=[path for _, path in aggregate_inputs("answers")],
        answers_meta=[path for _, path in aggregate_inputs("answers_meta")],
        verdicts=[path for _, path in aggregate_inputs("verdicts")],
        verdicts_meta=[path for _, path in aggregate_inputs("verdicts_meta")],
        judge_controls=dataset_files("results/verdicts/{dataset}/controls.jsonl"),
        decomposition=[path for _, _, path in decomposition_inputs()],
        compressed_meta=[f"results/compressed/{d}/{v}.meta.json" for d, v, _ in compressed_inputs()],
        docs=dataset_files("results/data/{dataset}/docs.jsonl"),
        trr="results/stats/trr.csv",
    output:
        scores="results/tables/scores.csv",
        question_scores="results/tables/question_scores.csv",
        runs=report("results/tables/runs.csv", caption="../report/runs.rst", category="Adapters"),
        tables=[report(f, caption="../report/table.rst", category="Tables") for f in table_files()],
        decomposition=[
            report(f, caption="../report/decomposition.rst", category="Where the knowledge went")
            for f in decomposition_tables()
        ],
        summary="results/tables/summary.json",
    log:
        "logs/aggregate/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate/aggregate.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=RES["light_mem_mb"] * 2,
    params:
        inputs=" ".join(
            [
                pairs_arg("--answers", aggregate_inputs("answers")),
                pairs_arg("--answers-meta", aggregate_inputs("answers_meta")),
                pairs_arg("--verdicts", aggregate_inputs("verdicts")),
                pairs_arg("--verdicts-meta", aggregate_inputs("verdicts_meta")),
                pairs_arg("--judge-controls", [(d, f"results/verdicts/{d}/controls.jsonl") for d in DATASETS]),
                pairs_arg("--decomposition", decomposition_inputs()),
                pairs_arg(
                    "--compressed-meta",
                    [(d, v, f"results/compressed/{d}/{v}.meta.json") for d, v, _ in compressed_inputs()],
                ),
                pairs_arg("--docs", [(d, f"results/data/{d}/docs.jsonl") for d in DATASETS]),
            ]
        ),
        tables=pairs_arg("--table", [(e, d, f) for (e, d), f in zip(table_keys(), table_files())]),
        decomposition=pairs_arg("--decomposition-table", list(zip(DATASETS, decomposition_tables()))),
        experiments=lambda wildcards: experiments_json(),
        settings=lambda wildcards: as_json(config["aggregate"]),
        base_model=config["model"]["base"],
        code=CODE["aggregate"],
    shell:
        "lorapress aggregate --settings {params.settings:q} --experiments {params.experiments:q} {params.inputs}"
        " --base-model {params.base_model:q}"
        " --trr {input.trr} --scores {output.scores} --question-scores {output.question_scores} --runs {output.runs}"
        " {params.tables} {params.decomposition} --summary {output.summary} > {log} 2>&1"
