# Stage report: one self-contained HTML page.


rule report:
    input:
        trr="results/stats/trr.csv",
        trr_items="results/stats/trr_items.csv",
        scores="results/tables/scores.csv",
        compression=dataset_files("results/tables/compression_{dataset}.csv"),
    output:
        "results/report.html",
    log:
        "logs/report/report.log",
    resources:
        mem_mb=RES["light_mem_mb"],
    params:
        metric=config["aggregate"]["metric"],
        config=lambda wildcards: as_json(config),
    shell:
        "lorapress report --trr {input.trr} --trr-items {input.trr_items} --scores {input.scores}"
        " --compression {input.compression} --metric {params.metric} --config {params.config:q}"
        " --out {output} > {log} 2>&1"
