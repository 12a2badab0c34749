# Stage prepare: validate a dataset; write its knowledge items and questions.


rule prepare:
    input:
        lambda wildcards: config["datasets"][wildcards.dataset]["path"],
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
        options=lambda wildcards: as_json(
            {k: v for k, v in config["datasets"][wildcards.dataset].items() if k not in ("format", "path", "download")}
        ),
    shell:
        "lorapress prepare --format {params.format} --input {input:q} --docs {output.docs} --qa {output.qa}"
        " --options {params.options:q} > {log} 2>&1"
