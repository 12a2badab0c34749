# Stage decompose: where the knowledge went, per variant (every dataset through one model load): fact
# survival and the base model answering open-book from the compressed text (the closed-book side is
# evaluate's).


rule decompose:
    input:
        qa=dataset_files("results/data/{dataset}/qa.jsonl"),
        compressed=dataset_files("results/compressed/{dataset}/{{variant}}.jsonl"),
        model=base_model_input(),
    output:
        records=dataset_files("results/decompose/{dataset}/{{variant}}.jsonl"),
        meta=dataset_files("results/decompose/{dataset}/{{variant}}.meta.json"),
    log:
        "logs/decompose/{variant}.log",
    benchmark:
        "results/benchmarks/decompose/{variant}.tsv"
    conda:
        GENERATE_ENV
    threads: RES["threads"]
    resources:
        mem_mb=RES["generate_mem_mb"],
        runtime=RES["runtime_min"],
        gpu=RES["gpu"],
        vllm_kv_gib=config["generation"]["kv_cache_gib"],
        vllm_bind=RES["vllm_cpu_threads_bind"],
        vllm_gpu_util=VLLM_GPU_UTIL,
    params:
        datasets=lambda wildcards, input, output: " ".join(
            f"--dataset {d} {q} {c} {r} {m}"
            for d, q, c, r, m in zip(DATASETS, input.qa, input.compressed, output.records, output.meta)
        ),
        settings=as_json({k: config["evaluate"][k] for k in ("max_tokens", "repetition_penalty", "system_prompt")}),
        engine=as_json(engine_params()),
        model=model_arg,
        code=CODE["decompose"],
    shell:
        "lorapress decompose {params.datasets} --model {params.model:q} --settings {params.settings:q}"
        " --engine {params.engine:q} --threads {threads} --kv-cache-gib {resources.vllm_kv_gib}"
        " --cpu-bind {resources.vllm_bind}"
        " --gpu-memory-utilization {resources.vllm_gpu_util} > {log} 2>&1"
