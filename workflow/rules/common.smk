# Config validation, wildcard constraints, input functions and the target list.
# Everything that decides *what* runs lives in lorapress.experiments, so the
# library and the workflow agree on run names and paths.
import json
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from lorapress import EXTRACTIVE, SUMMARY_LEVELS, VARIANTS
from lorapress.experiments import eval_chunks, experiment_runs
from lorapress.model import builtin_name

min_version("9.0")


validate(config, "../schemas/config.schema.yaml")

DATASETS = sorted(config["datasets"])
VARIANTS_USED = config["compression"]["variants"]
RES = config["resources"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS),
    chunk=r"\d{3}",
    rank=r"\d+",
    n_items=r"all|\d+",
    seed=r"\d+",


def as_json(obj):
    """Deterministic JSON for params and command lines (params drive reruns)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------- model
BUILTIN_MODEL = builtin_name(config["model"]["base"])


def base_model():
    """What engines and trainers load: the converted builtin, a directory or a hub id."""
    if BUILTIN_MODEL:
        return f"resources/models/{BUILTIN_MODEL}"
    return config["model"]["base"]


def base_model_input():
    """The model as a file dependency (a hub id is no file: nothing to wait for)."""
    path = base_model()
    return [path] if BUILTIN_MODEL or os.path.isdir(path) else []


def generation_params():
    """Engine settings that change what is generated (the KV cache size does not: it is a resource)."""
    return as_json({k: config["generation"][k] for k in ("seed", "max_num_seqs", "repetition_penalty")})


def model_params():
    return as_json({k: config["model"][k] for k in ("dtype", "max_model_len", "trust_remote_code", "chat_template_kwargs")})


# ---------------------------------------------------------------- datasets
def download_source(wildcards):
    source = config["datasets"][wildcards.dataset].get("download")
    if not source or source["filename"] != wildcards.filename:
        raise WorkflowError(f"datasets.{wildcards.dataset}: no download source for {wildcards.filename}")
    return source


def check_datasets():
    """One clear line for a dataset that is neither present nor downloadable."""
    for name, dataset in config["datasets"].items():
        source = dataset.get("download")
        if source:
            expected = f"resources/datasets/{name}/{source['filename']}"
            if dataset["path"] != expected:
                raise WorkflowError(f"datasets.{name}.path must be {expected} when datasets.{name}.download is set")
        elif not os.path.exists(dataset["path"]):
            raise WorkflowError(
                f"datasets.{name}.path: {dataset['path']} does not exist; put the {dataset['format']} file there "
                f"({FORMAT_HELP[dataset['format']]}) or point datasets.{name}.path at it"
            )


FORMAT_HELP = {
    "wiki_jsonl": 'one JSON object per line: {"id", "title", "text", "questions": [{"question", "answer"}]}',
    "longmemeval": "an official LongMemEval JSON file such as longmemeval_s_cleaned.json",
}
check_datasets()


# ---------------------------------------------------------------- compress
def dataset_files(pattern, **kw):
    return [pattern.format(dataset=d, **kw) for d in DATASETS]


def variant_settings(variant):
    """The config a variant is built from; nothing else reruns it."""
    comp = config["compression"]
    if variant in SUMMARY_LEVELS:
        if variant not in comp["levels"]:
            raise ValueError(f"config compression.levels has no entry for {variant}")
        return {**comp["levels"][variant], "max_tokens_slack": comp["max_tokens_slack"],
                "max_input_tokens": comp["max_input_tokens"]}
    if variant == EXTRACTIVE:
        return comp["ext"]
    return {}


def compress_model(wildcards):
    return base_model_input() if wildcards.variant in SUMMARY_LEVELS else []


# ---------------------------------------------------------------- train / evaluate
def train_settings(wildcards):
    train = {k: v for k, v in config["train"].items() if k != "seeds"}
    train.update(rank=int(wildcards.rank), seed=int(wildcards.seed),
                 items=None if wildcards.n_items == "all" else int(wildcards.n_items),
                 trust_remote_code=config["model"]["trust_remote_code"])
    return as_json(train)


def chunk_runs(wildcards):
    return eval_chunks(config, wildcards.dataset)[int(wildcards.chunk)]


def adapters_for_chunk(wildcards):
    return [run.adapter_dir for run in chunk_runs(wildcards) if not run.is_baseline]


def chunk_runs_json(wildcards):
    return as_json([{"run_id": r.run_id, "adapter": r.adapter_dir, "rank": r.rank} for r in chunk_runs(wildcards)])


def eval_files(dataset):
    n = len(eval_chunks(config, dataset))
    return [f"results/eval/{dataset}/chunk{i:03d}.jsonl" for i in range(n)]


def experiments_json():
    return as_json({d: [[e, r.run_id] for e, r in experiment_runs(config, d)] for d in DATASETS})


def control_questions():
    path = config["evaluate"]["control"]
    return [path] if path else []


def table_files():
    """The derived tables aggregate writes: compression always, the other grids where they run."""
    files = []
    for dataset in DATASETS:
        experiments = {"compression", *(e for e, _ in experiment_runs(config, dataset))}
        files += [f"results/tables/{e}_{dataset}.csv" for e in sorted(experiments)]
    return files


# Environment of a vLLM job's shell: KV cache size and CPU threads are resources,
# not params, because they change speed, not what is generated.
VLLM_ENV = (
    "VLLM_CPU_KVCACHE_SPACE={resources.vllm_kv_gib} OMP_NUM_THREADS={threads}"
    f" VLLM_CPU_OMP_THREADS_BIND={RES['vllm_cpu_threads_bind']}"
)

# ---------------------------------------------------------------- targets
def final_outputs():
    return ["results/report.html"]
