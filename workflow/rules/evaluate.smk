# Stage evaluate: each chunk of runs answers the questions through one engine (answers, answer
# log-likelihoods, a cross-check through the other backend). The judge grades them in its own
# rule, so a changed judge re-judges without re-answering.


rule evaluate:
    input:
        qa="results/data/{dataset}/qa.jsonl",
        model=base_model_input(),
        adapters=adapters_for_chunk,
        control=control_questions(),
    output:
        answers="results/answers/{dataset}/{chunk}.jsonl",
        meta="results/answers/{dataset}/{chunk}.meta.json",
    log:
        "logs/evaluate/{dataset}/{chunk}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{chunk}.tsv"
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
        runs=chunk_runs_json,
        settings=answer_settings(),
        engine=as_json(engine_params()),
        model=model_arg,
        control=lambda wildcards, input: f"--control {input.control}" if input.control else "",
        code=CODE["evaluate"],
    shell:
        "lorapress evaluate --model {params.model:q} --qa {input.qa} {params.control}"
        " --runs {params.runs:q} --settings {params.settings:q} --engine {params.engine:q}"
        " --threads {threads} --kv-cache-gib {resources.vllm_kv_gib} --cpu-bind {resources.vllm_bind}"
        " --gpu-memory-utilization {resources.vllm_gpu_util} --out {output.answers} --meta {output.meta} > {log} 2>&1"


rule judge:
    input:
        answers="results/answers/{dataset}/{chunk}.jsonl",
        model=base_model_input(),
        templates=judge_templates_input(),
    output:
        verdicts="results/verdicts/{dataset}/{chunk}.jsonl",
        meta="results/verdicts/{dataset}/{chunk}.meta.json",
    log:
        "logs/judge/{dataset}/{chunk}.log",
    benchmark:
        "results/benchmarks/judge/{dataset}/{chunk}.tsv"
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
        judge=judge_settings(),
        # derived from input, so not a rerun trigger: renaming the variable changes no verdict
        key_env=lambda wildcards, input: config["judge"]["api_key_env"],
        engine=as_json(engine_params()),
        model=model_arg,
        base_id=config["model"]["base"],
        code=CODE["judge"],
    shell:
        "lorapress judge --answers {input.answers} --judge {params.judge:q} --key-env {params.key_env}"
        " --model {params.model:q} --base-id {params.base_id:q} --engine {params.engine:q}"
        " --threads {threads} --kv-cache-gib {resources.vllm_kv_gib} --cpu-bind {resources.vllm_bind}"
        " --gpu-memory-utilization {resources.vllm_gpu_util} --out {output.verdicts} --meta {output.meta} > {log} 2>&1"


rule judge_controls:
    input:
        qa="results/data/{dataset}/qa.jsonl",
        model=base_model_input(),
        templates=judge_templates_input(),
    output:
        verdicts="results/verdicts/{dataset}/controls.jsonl",
        meta="results/verdicts/{dataset}/controls.meta.json",
    log:
        "logs/judge/{dataset}/controls.log",
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
        judge=judge_settings(),
        key_env=lambda wildcards, input: config["judge"]["api_key_env"],
        engine=as_json(engine_params()),
        model=model_arg,
        base_id=config["model"]["base"],
        code=CODE["judge"],
    shell:
        "lorapress judge --controls {input.qa} --judge {params.judge:q} --key-env {params.key_env}"
        " --model {params.model:q} --base-id {params.base_id:q} --engine {params.engine:q}"
        " --threads {threads} --kv-cache-gib {resources.vllm_kv_gib} --cpu-bind {resources.vllm_bind}"
        " --gpu-memory-utilization {resources.vllm_gpu_util} --out {output.verdicts} --meta {output.meta} > {log} 2>&1"


if JUDGE_ENDPOINT:

    # A judge behind an endpoint computes elsewhere: its jobs are light, hold no GPU and load no model
    # (the GPU rules above stay unused).
    ruleorder: judge_endpoint > judge
    ruleorder: judge_controls_endpoint > judge_controls

    use rule judge as judge_endpoint with:
        input:
            answers="results/answers/{dataset}/{chunk}.jsonl",
            templates=judge_templates_input(),
        threads: 1
        resources:
            mem_mb=RES["light_mem_mb"],
            runtime=RES["runtime_min"],
            vllm_kv_gib=config["generation"]["kv_cache_gib"],
            vllm_bind=RES["vllm_cpu_threads_bind"],
            vllm_gpu_util=VLLM_GPU_UTIL,

    use rule judge_controls as judge_controls_endpoint with:
        input:
            qa="results/data/{dataset}/qa.jsonl",
            templates=judge_templates_input(),
        threads: 1
        resources:
            mem_mb=RES["light_mem_mb"],
            runtime=RES["runtime_min"],
            vllm_kv_gib=config["generation"]["kv_cache_gib"],
            vllm_bind=RES["vllm_cpu_threads_bind"],
            vllm_gpu_util=VLLM_GPU_UTIL,
