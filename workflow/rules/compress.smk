# Stage compress: one job per variant, covering every dataset with one vLLM
# engine start (the expensive part on CPU). A level's params hold only its own
# prompt and target, so editing one level reruns only that level.


rule compress:
    input:
        docs=dataset_files("results/data/{dataset}/docs.jsonl"),
        model=compress_model,
    output:
        variant=dataset_files("results/compressed/{dataset}/{{variant}}.jsonl"),
        meta=dataset_files("results/compressed/{dataset}/{{variant}}.meta.json"),
    log:
        "logs/compress/{variant}.log",
    benchmark:
        "results/benchmarks/compress/{variant}.tsv"
    conda:
        "../../envs/generate.yaml"
    threads: RES["threads"]
    resources:
        mem_mb=lambda wildcards: RES["generate_mem_mb"] if wildcards.variant in SUMMARY_LEVELS else RES["light_mem_mb"],
        runtime=RES["runtime_min"],
        gpu=lambda wildcards: RES["gpu"] if wildcards.variant in SUMMARY_LEVELS else 0,
        cpu_slots=1,
        vllm_kv_gib=config["generation"]["kv_cache_gib"],
    params:
        settings=lambda wildcards: as_json(variant_settings(wildcards.variant)),
        generation=lambda wildcards: generation_params() if wildcards.variant in SUMMARY_LEVELS else "{}",
        model_config=lambda wildcards: model_params() if wildcards.variant in SUMMARY_LEVELS else "{}",
        model=lambda wildcards: base_model() if wildcards.variant in SUMMARY_LEVELS else "",
    shell:
        VLLM_ENV + " lorapress compress --variant {wildcards.variant}"
        " --docs {input.docs} --out {output.variant} --settings {params.settings:q}"
        " --model={params.model:q} --generation {params.generation:q}"
        " --model-config {params.model_config:q} > {log} 2>&1"
