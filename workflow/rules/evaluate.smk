# Stage evaluate: each chunk of runs answers the questions through one vLLM
# engine (one LoRARequest per adapter), then the judge grades every answer.


rule evaluate:
    input:
        qa="results/data/{dataset}/qa.jsonl",
        model=base_model_input(),
        adapters=adapters_for_chunk,
        control=control_questions(),
    output:
        records="results/eval/{dataset}/chunk{chunk}.jsonl",
        meta="results/eval/{dataset}/chunk{chunk}.meta.json",
    log:
        "logs/evaluate/{dataset}/chunk{chunk}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/chunk{chunk}.tsv"
    conda:
        "../../envs/generate.yaml"
    threads: RES["threads"]
    resources:
        mem_mb=RES["generate_mem_mb"],
        runtime=RES["runtime_min"],
        gpu=RES["gpu"],
        cpu_slots=1,
        vllm_kv_gib=config["generation"]["kv_cache_gib"],
    params:
        runs=chunk_runs_json,
        settings=as_json(config["evaluate"]),
        judge=as_json(config["judge"]),
        generation=generation_params(),
        model_config=model_params(),
        model=base_model(),
        control=lambda wildcards, input: f"--control {input.control}" if input.control else "",
    shell:
        VLLM_ENV + " lorapress evaluate --model {params.model:q} --qa {input.qa}"
        " --runs {params.runs:q} --out {output.records} --meta {output.meta} --settings {params.settings:q}"
        " --judge {params.judge:q} --generation {params.generation:q}"
        " --model-config {params.model_config:q} {params.control} > {log} 2>&1"
