# Stage aggregate: per-question records -> long-format scores -> derived tables.


rule aggregate:
    input:
        [f for dataset in DATASETS for f in eval_files(dataset)],
    output:
        scores="results/tables/scores.csv",
        compression=dataset_files("results/tables/compression_{dataset}.csv"),
    log:
        "logs/aggregate/aggregate.log",
    resources:
        mem_mb=RES["light_mem_mb"],
    params:
        experiments=experiments_json(),
        metric=config["aggregate"]["metric"],
    shell:
        "lorapress aggregate --predictions {input} --experiments {params.experiments:q}"
        " --scores {output.scores} --metric {params.metric} --out results/tables > {log} 2>&1"
