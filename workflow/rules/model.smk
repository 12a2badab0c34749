# Stage model: convert the embedded GGUF once into a Hugging Face directory.


rule convert_model:
    output:
        directory("resources/models/{builtin}"),
    log:
        "logs/model/{builtin}.log",
    benchmark:
        "results/benchmarks/model/{builtin}.tsv"
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
