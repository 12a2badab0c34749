# Stage stats: TRR (characters, words, tokens; per-item mean and pooled) and retention of every variant.


rule stats:
    input:
        compressed=[path for _, _, path in compressed_inputs()],
        docs=dataset_files("results/data/{dataset}/docs.jsonl"),
        model=base_model_input(),
    output:
        trr=report("results/stats/trr.csv", caption="../report/trr.rst", category="TRR"),
        per_item="results/stats/trr_items.csv",
    log:
        "logs/stats/trr.log",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=RES["light_mem_mb"] * 2,
    params:
        compressed=pairs_arg("--compressed", compressed_inputs()),
        docs=pairs_arg("--docs", [(d, f"results/data/{d}/docs.jsonl") for d in DATASETS]),
        tokenizer=model_arg,
        code=CODE["stats"],
    shell:
        "lorapress stats {params.compressed} {params.docs} --tokenizer {params.tokenizer:q}"
        " --out {output.trr} --items-out {output.per_item} > {log} 2>&1"
