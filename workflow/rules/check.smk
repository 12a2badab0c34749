# Preflight on a GPU node: `lorapress check` as one short job, where the study's GPU jobs will run (same
# partition, same card, same software), before GPU hours are spent. Not part of the study's DAG: ask for it,
#   snakemake --configfile config/paper.yaml --profile profiles/slurm results/check/gpu_node.txt
# (-R check_gpu_node to check again). A failed check fails the job; its lines are in the log either way.


rule check_gpu_node:
    output:
        "results/check/gpu_node.txt",
    log:
        "logs/check/gpu_node.log",
    conda:
        GENERATE_ENV
    threads: 1
    resources:
        mem_mb=RES["light_mem_mb"],
        runtime=15,
        gpu=RES["gpu"],
    params:
        configfiles=" ".join(str(f) for f in workflow.overwrite_configfiles) or "config.yaml",
    shell:
        "lorapress check --configfile {params.configfiles} --profile-dir none 2>&1 | tee {log} > {output}"
