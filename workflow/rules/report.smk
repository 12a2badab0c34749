# Stage report: one self-contained HTML page.


rule report:
    input:
        trr="results/stats/trr.csv",
        trr_items="results/stats/trr_items.csv",
        scores="results/tables/scores.csv",
        runs="results/tables/runs.csv",
        tables=table_files(),
        decomposition=decomposition_tables(),
        summary="results/tables/summary.json",
        benchmarks=[path for _, _, path in benchmark_files()],
    output:
        report("results/report.html", caption="../report/report.rst", category="Report"),
    log:
        "logs/report/report.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=RES["light_mem_mb"] * 2,
    params:
        tables=pairs_arg("--table", [(e, d, f) for (e, d), f in zip(table_keys(), table_files())]),
        decomposition=pairs_arg("--decomposition", list(zip(DATASETS, decomposition_tables()))),
        benchmarks=pairs_arg("--benchmark", benchmark_files()),
        metadata=lambda wildcards: report_metadata(),
        code=CODE["report"],
    shell:
        "lorapress report --trr {input.trr} --trr-items {input.trr_items} --scores {input.scores} --runs {input.runs}"
        " --summary {input.summary} {params.tables} {params.decomposition} {params.benchmarks}"
        " --metadata {params.metadata:q} --out {output} > {log} 2>&1"
