# Stage compress: one job per variant covering every unsharded dataset with one engine start
# (the expensive part on CPU); a dataset listed in compression.shards is split into that many
# jobs per variant, gathered into the same file. A level's params hold only its own prompt and
# target, so editing one level reruns only that level.


if UNSHARDED:

    rule compress:
        input:
            docs=dataset_files("results/data/{dataset}/docs.jsonl", UNSHARDED),
            model=compress_model,
        output:
            variant=dataset_files("results/compressed/{dataset}/{{variant}}.jsonl", UNSHARDED),
            meta=dataset_files("results/compressed/{dataset}/{{variant}}.meta.json", UNSHARDED),
        log:
            "logs/compress/{variant}.log",
        benchmark:
            "results/benchmarks/compress/{variant}.tsv"
        conda:
            "../../envs/generate.yaml"
        threads: RES["threads"]
        resources:
            mem_mb=lambda wildcards: (
                RES["generate_mem_mb"] if wildcards.variant in SUMMARY_LEVELS else RES["light_mem_mb"]
            ),
            runtime=RES["runtime_min"],
            gpu=lambda wildcards: RES["gpu"] if wildcards.variant in SUMMARY_LEVELS else 0,
            cpu_slots=lambda wildcards: 1 if wildcards.variant in SUMMARY_LEVELS else 0,
            vllm_kv_gib=config["generation"]["kv_cache_gib"],
            vllm_bind=RES["vllm_cpu_threads_bind"],
        params:
            settings=lambda wildcards: as_json(variant_settings(wildcards.variant)),
            engine=compress_engine,
            model=model_arg,
            code=CODE["compress"],
        shell:
            "lorapress compress --variant {wildcards.variant} --docs {input.docs}"
            " --out {output.variant} --meta {output.meta} --settings {params.settings:q}"
            " --model={params.model:q} --engine {params.engine:q}"
            " --threads {threads} --kv-cache-gib {resources.vllm_kv_gib} --cpu-bind {resources.vllm_bind} > {log} 2>&1"


if SHARDED:

    rule compress_shard:
        input:
            docs="results/data/{dataset}/docs.jsonl",
            model=compress_model,
        output:
            variant="results/compressed/{dataset}/shards/{variant}.{shard}-of-{shards}.jsonl",
            meta="results/compressed/{dataset}/shards/{variant}.{shard}-of-{shards}.meta.json",
        log:
            "logs/compress/{dataset}/{variant}.{shard}-of-{shards}.log",
        benchmark:
            "results/benchmarks/compress/{dataset}/{variant}.{shard}-of-{shards}.tsv"
        conda:
            "../../envs/generate.yaml"
        threads: RES["threads"]
        resources:
            mem_mb=lambda wildcards: (
                RES["generate_mem_mb"] if wildcards.variant in SUMMARY_LEVELS else RES["light_mem_mb"]
            ),
            runtime=RES["runtime_min"],
            gpu=lambda wildcards: RES["gpu"] if wildcards.variant in SUMMARY_LEVELS else 0,
            cpu_slots=lambda wildcards: 1 if wildcards.variant in SUMMARY_LEVELS else 0,
            vllm_kv_gib=config["generation"]["kv_cache_gib"],
            vllm_bind=RES["vllm_cpu_threads_bind"],
        params:
            settings=lambda wildcards: as_json(variant_settings(wildcards.variant)),
            engine=compress_engine,
            model=model_arg,
            code=CODE["compress"],
        shell:
            "lorapress compress --variant {wildcards.variant} --docs {input.docs}"
            " --out {output.variant} --meta {output.meta} --shard {wildcards.shard} {wildcards.shards}"
            " --settings {params.settings:q} --model={params.model:q} --engine {params.engine:q}"
            " --threads {threads} --kv-cache-gib {resources.vllm_kv_gib} --cpu-bind {resources.vllm_bind} > {log} 2>&1"

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
        conda:
            "../../envs/data.yaml"
        resources:
            mem_mb=RES["light_mem_mb"],
        params:
            code=CODE["compress"],
        shell:
            "lorapress compress --variant {wildcards.variant} --gather {input.parts} --gather-meta {input.metas}"
            " --out {output.variant} --meta {output.meta} > {log} 2>&1"
