# Stage stats: TRR (characters, words, tokens) and retention of every variant.


rule stats:
    input:
        compressed=expand(
            "results/compressed/{dataset}/{variant}.jsonl", dataset=DATASETS, variant=VARIANTS_USED
        ),
        docs=dataset_files("results/data/{dataset}/docs.jsonl"),
        model=base_model_input(),
    output:
        trr="results/stats/trr.csv",
        per_item="results/stats/trr_items.csv",
    log:
        "logs/stats/trr.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=RES["light_mem_mb"] * 2,
    params:
        tokenizer=base_model(),
    shell:
        "lorapress stats --compressed {input.compressed} --docs {input.docs} --tokenizer {params.tokenizer:q}"
        " --out {output.trr} --items-out {output.per_item} > {log} 2>&1"
