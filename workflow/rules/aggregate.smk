# Stage aggregate: per-question records -> long-format scores -> the study's tables.


rule aggregate:
    input:
        predictions=[f for dataset in DATASETS for f in eval_files(dataset)],
        trr="results/stats/trr.csv",
    output:
        scores="results/tables/scores.csv",
        question_scores="results/tables/question_scores.csv",
        tables=table_files(),
        summary="results/tables/summary.json",
    log:
        "logs/aggregate/aggregate.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=RES["light_mem_mb"] * 2,
    params:
        experiments=experiments_json(),
        metric=config["aggregate"]["metric"],
        out_dir=lambda wildcards, output: os.path.dirname(output.scores),
    shell:
        "lorapress aggregate --predictions {input.predictions} --experiments {params.experiments:q}"
        " --trr {input.trr} --scores {output.scores} --metric {params.metric} --out {params.out_dir}"
        " > {log} 2>&1"
