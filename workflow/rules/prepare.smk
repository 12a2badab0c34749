# Stage prepare: validate a dataset; write its knowledge items and questions.


rule prepare:
    input:
        dataset_file,
    output:
        docs="results/data/{dataset}/docs.jsonl",
        qa="results/data/{dataset}/qa.jsonl",
    log:
        "logs/prepare/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=RES["light_mem_mb"],
    params:
        format=lambda wildcards: config["datasets"][wildcards.dataset]["format"],
        path=lambda wildcards, input: config["datasets"][wildcards.dataset]["path"],
        options=prepare_options,
        code=CODE["prepare"],
    shell:
        "lorapress prepare --format {params.format} --input {params.path:q} --docs {output.docs} --qa {output.qa}"
        " --options {params.options:q} > {log} 2>&1"
