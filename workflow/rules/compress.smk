# Stage compress. Variants a local model writes (generate: the summary levels, rewrites) run on a GPU:
# one job per variant covering every unsharded dataset with one engine start (the expensive part); a
# dataset listed in compression.shards is split into that many jobs per variant, gathered into the same
# file. The other kinds (original, extract, command, file, an endpoint's generate) are CPU work: one job
# each for every dataset, asking for no GPU. A variant's params hold only its own definition (per
# dataset), so editing one variant reruns only that variant.


rule compress_cpu:
    input:
        docs=dataset_files("results/data/{dataset}/docs.jsonl"),
        files=variant_files,
        tokenizer=endpoint_tokenizer_input,
    output:
        variant=dataset_files("results/compressed/{dataset}/{{variant}}.jsonl"),
        meta=dataset_files("results/compressed/{dataset}/{{variant}}.meta.json"),
    log:
        "logs/compress/{variant}.log",
    benchmark:
        "results/benchmarks/compress/{variant}.tsv"
    wildcard_constraints:
        variant="|".join(CPU_VARIANTS) or "^$",
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=RES["light_mem_mb"],
    params:
        settings=lambda wildcards: as_json(variant_settings(wildcards.variant)),
        datasets=DATASETS,
        engine=cpu_variant_engine,
        model=endpoint_tokenizer_arg,
        code=CODE["compress"],
    shell:
        "lorapress compress --variant {wildcards.variant} --datasets {params.datasets} --docs {input.docs}"
        " --out {output.variant} --meta {output.meta} --settings {params.settings:q}"
        " --engine {params.engine:q} {params.model} > {log} 2>&1"


if UNSHARDED:

    rule compress:
        input:
            docs=dataset_files("results/data/{dataset}/docs.jsonl", UNSHARDED),
            model=compressor_input,
        output:
            variant=dataset_files("results/compressed/{dataset}/{{variant}}.jsonl", UNSHARDED),
            meta=dataset_files("results/compressed/{dataset}/{{variant}}.meta.json", UNSHARDED),
        log:
            "logs/compress/{variant}.log",
        benchmark:
            "results/benchmarks/compress/{variant}.tsv"
        wildcard_constraints:
            variant=LEVEL_PATTERN,
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
            settings=lambda wildcards: as_json(variant_settings(wildcards.variant, UNSHARDED)),
            datasets=UNSHARDED,
            engine=compress_engine(),
            model=compressor_arg,
            code=CODE["compress"],
        shell:
            "lorapress compress --variant {wildcards.variant} --datasets {params.datasets} --docs {input.docs}"
            " --out {output.variant} --meta {output.meta} --settings {params.settings:q}"
            " --model={params.model:q} --engine {params.engine:q}"
            " --threads {threads} --kv-cache-gib {resources.vllm_kv_gib} --cpu-bind {resources.vllm_bind}"
            " --gpu-memory-utilization {resources.vllm_gpu_util} > {log} 2>&1"


if SHARDED:

    rule compress_shard:
        input:
            docs="results/data/{dataset}/docs.jsonl",
            model=compressor_input,
        output:
            variant="results/compressed/{dataset}/shards/{variant}.{shard}-of-{shards}.jsonl",
            meta="results/compressed/{dataset}/shards/{variant}.{shard}-of-{shards}.meta.json",
        log:
            "logs/compress/{dataset}/{variant}.{shard}-of-{shards}.log",
        benchmark:
            "results/benchmarks/compress/{dataset}/{variant}.{shard}-of-{shards}.tsv"
        wildcard_constraints:
            variant=LEVEL_PATTERN,
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
            settings=lambda wildcards: as_json(variant_settings(wildcards.variant, [wildcards.dataset])),
            engine=compress_engine(),
            model=compressor_arg,
            code=CODE["compress"],
        shell:
            "lorapress compress --variant {wildcards.variant} --datasets {wildcards.dataset} --docs {input.docs}"
            " --out {output.variant} --meta {output.meta} --shard {wildcards.shard} {wildcards.shards}"
            " --settings {params.settings:q} --model={params.model:q} --engine {params.engine:q}"
            " --threads {threads} --kv-cache-gib {resources.vllm_kv_gib} --cpu-bind {resources.vllm_bind}"
            " --gpu-memory-utilization {resources.vllm_gpu_util} > {log} 2>&1"

    rule gather_shards:
        input:
            parts=lambda wildcards: shard_files(wildcards, "jsonl"),
            metas=lambda wildcards: shard_files(wildcards, "meta.json"),
        output:
            variant="results/compressed/{dataset}/{variant}.jsonl",
            meta="results/compressed/{dataset}/{variant}.meta.json",
        log:
            "logs/compress/{dataset}/{variant}.gather.log",
        wildcard_constraints:
            dataset="|".join(SHARDED),
            variant=LEVEL_PATTERN,
        conda:
            "../../envs/data.yaml"
        resources:
            mem_mb=RES["light_mem_mb"],
        params:
            code=CODE["compress"],
        shell:
            "lorapress compress --variant {wildcards.variant} --gather {input.parts} --gather-meta {input.metas}"
            " --out {output.variant} --meta {output.meta} > {log} 2>&1"
