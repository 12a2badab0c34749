# Stage download: fetch a dataset that has an official public source (network needed).
# Only datasets with a `download:` entry have a job here; the others must exist at their path.
# A local rule: it runs where Snakemake runs (a cluster's login node has the network).


localrules:
    download_dataset,


rule download_dataset:
    output:
        "resources/datasets/{dataset}/{filename}",
    log:
        "logs/download/{dataset}/{filename}.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=RES["light_mem_mb"],
    params:
        hf_dataset=lambda wildcards: download_source(wildcards)["hf_dataset"],
        revision=lambda wildcards: download_source(wildcards)["revision"],
        code=CODE["download"],
    shell:
        "lorapress download --hf-dataset {params.hf_dataset} --filename {wildcards.filename}"
        " --revision {params.revision} --out {output} > {log} 2>&1"
