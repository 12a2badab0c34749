# Stage report: one self-contained HTML page.


rule report:
    input:
        trr="results/stats/trr.csv",
        trr_items="results/stats/trr_items.csv",
        scores="results/tables/scores.csv",
        tables=table_files(),
        summary="results/tables/summary.json",
    output:
        "results/report.html",
    log:
        "logs/report/report.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=RES["light_mem_mb"] * 2,
    params:
        metric=config["aggregate"]["metric"],
        config=lambda wildcards: as_json(config),
        # Read when the report runs: every job upstream has finished its benchmark file.
        benchmarks="results/benchmarks",
    shell:
        "lorapress report --trr {input.trr} --trr-items {input.trr_items} --scores {input.scores}"
        " --tables {input.tables} --summary {input.summary} --metric {params.metric} --config {params.config:q}"
        " --benchmarks-dir {params.benchmarks} --out {output} > {log} 2>&1"
