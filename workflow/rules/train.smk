# Stage train: one LoRA/QLoRA adapter per run. The path holds everything that is trained
# (dataset, condition, rank, items, seed), so runs shared by several experiments are trained once.


rule train:
    input:
        text="results/compressed/{dataset}/{variant}.jsonl",
        model=base_model_input(),
    output:
        directory("results/adapters/{dataset}/{variant}/r{rank}_n{n_items}_s{seed}"),
    log:
        "logs/train/{dataset}/{variant}/r{rank}_n{n_items}_s{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{variant}/r{rank}_n{n_items}_s{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: RES["threads"]
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=RES["runtime_min"],
        gpu=RES["gpu"],
    params:
        settings=train_settings,
        model=model_arg,
        code=CODE["train"],
    shell:
        "lorapress train --model {params.model:q} --text {input.text} --out {output}"
        " --settings {params.settings:q} --threads {threads} > {log} 2>&1"
