# Stage model: the base model as a local directory, made once where Snakemake runs (local rules: on a
# cluster the login node, which has the network compute nodes often lack); every other job loads it
# offline. The embedded GGUF is converted; a hub model is fetched at model.revision.


localrules:
    convert_model,
    fetch_model,


rule convert_model:
    output:
        directory("resources/models/{builtin}"),
    log:
        "logs/model/{builtin}.log",
    benchmark:
        "results/benchmarks/model/{builtin}.tsv"
    wildcard_constraints:
        builtin=BUILTIN_MODEL or "^$",
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        base=lambda wildcards: f"builtin:{wildcards.builtin}",
        code=CODE["model"],
    shell:
        "lorapress model --base {params.base} --out {output} > {log} 2>&1"


rule fetch_model:
    output:
        directory("resources/models/{hub}"),
    log:
        "logs/model/{hub}.log",
    wildcard_constraints:
        hub="|".join(re.escape(d) for d in HUB_MODELS) or "^$",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=RES["light_mem_mb"],
    params:
        hub=lambda wildcards: HUB_MODELS[wildcards.hub][0],
        revision=lambda wildcards: HUB_MODELS[wildcards.hub][1] or "main",
        code=CODE["model"],
    shell:
        "lorapress model --hub {params.hub} --revision {params.revision} --out {output} > {log} 2>&1"
