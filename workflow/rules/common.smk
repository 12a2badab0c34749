# Config validation, wildcard constraints, input functions, params and the target list.
# What runs is decided in lorapress.experiments, so the library and the workflow agree on
# run names and paths; every config mistake fails here, before any job (lorapress.config).
import json
import os
import re
from functools import lru_cache

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version, validate

from lorapress.config import (
    ConfigError,
    check_moved_keys,
    check_schema,
    check_semantics,
    given_variants,
    normalise_variants,
    resolve,
)
from lorapress.experiments import eval_chunks, experiment_runs
from lorapress.fingerprint import code_fingerprints
from lorapress.model import builtin_name, hub_dir_name, is_hub_id, is_pinned
from lorapress.variants import compressor_kind, runs_a_model, settings_for

min_version("9.0")


SCHEMA = os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
try:
    check_moved_keys(config)
    check_schema(config, SCHEMA)
    GIVEN_VARIANTS = given_variants(config)
    validate(config, "../schemas/config.schema.yaml")  # fills the defaults
    normalise_variants(config, GIVEN_VARIANTS, SCHEMA)  # compression.variants: name -> full definition, seeds filled in
    check_semantics(config)
    RESOLVED = resolve(config)
except ConfigError as exc:
    raise WorkflowError(str(exc))
logger.info(
    f"lorapress: computing in {RESOLVED['dtype']} (model.dtype {config['model']['dtype']}: "
    f"{RESOLVED['dtype_reason']}); evaluation backend {RESOLVED['backend']}"
)

DATASETS = sorted(config["datasets"])
VARIANT_DEFINITIONS = config["compression"]["variants"]
VARIANTS_USED = list(VARIANT_DEFINITIONS)
# a local model writes these (generate with the base model or another): GPU jobs, sharded where asked
MODEL_VARIANTS = [v for v in VARIANTS_USED if runs_a_model(VARIANT_DEFINITIONS[v])]
# everything else (original, extract, command, file, an endpoint's generate) is a CPU job per variant
CPU_VARIANTS = [v for v in VARIANTS_USED if v not in MODEL_VARIANTS]
LEVEL_PATTERN = "|".join(MODEL_VARIANTS) or "^$"
SHARDS = config["compression"]["shards"]
UNSHARDED = [d for d in DATASETS if SHARDS.get(d, 1) == 1]
SHARDED = [d for d in DATASETS if d not in UNSHARDED]
RES = config["resources"]
# a judge behind an OpenAI-compatible endpoint: its jobs need no GPU and no model (evaluate.smk)
JUDGE_ENDPOINT = config["judge"]["model"].startswith("openai:")
# what an engine job runs with (speed and memory, never what it generates: resources, not params)
VLLM_GPU_UTIL = str(config["generation"]["gpu_memory_utilization"])
# the vLLM build of the engine rules' conda environment: CUDA where jobs get GPUs
GENERATE_ENV = "../../envs/generate-cuda.yaml" if RES["gpu"] > 0 else "../../envs/generate.yaml"
# The library code each stage runs: a param of its rule, so editing the code reruns the stage. Every Snakemake
# start computes them (each cluster job's too): what parsing the package found is kept by the files' bytes.
RULE_STAGES = (
    "model",
    "download",
    "prepare",
    "compress",
    "stats",
    "train",
    "evaluate",
    "judge",
    "decompose",
    "aggregate",
    "report",
)
CODE = code_fingerprints(RULE_STAGES, cache=".snakemake/lorapress/code-fingerprints.json")


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS_USED),
    chunk=r"h[01]*",
    rank=r"\d+",
    n_items=r"all|\d+",
    seed=r"\d+",
    shard=r"\d+",
    shards=r"\d+",


def as_json(obj):
    """Deterministic JSON for params and command lines (params drive reruns)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------- model and engines
BUILTIN_MODEL = builtin_name(config["model"]["base"])
# a hub model is fetched once (rule fetch_model) into a directory named by its revision
HUB_MODEL_DIR = (
    hub_dir_name(config["model"]["base"], config["model"]["revision"]) if is_hub_id(config["model"]["base"]) else None
)
# every hub model a job loads, fetched once by a local job: directory -> (id, revision)
HUB_MODELS = {HUB_MODEL_DIR: (config["model"]["base"], config["model"]["revision"])} if HUB_MODEL_DIR else {}
for _definition in config["compression"]["variants"].values():
    if compressor_kind(_definition) == "model" and is_hub_id(_definition["compressor"]):
        HUB_MODELS[hub_dir_name(_definition["compressor"], _definition["compressor_revision"])] = (
            _definition["compressor"],
            _definition["compressor_revision"],
        )
if HUB_MODEL_DIR and not is_pinned(config["model"]["revision"]):
    logger.warning(
        f"lorapress: model.revision is {config['model']['revision'] or 'unset'}: {config['model']['base']} is "
        "fetched at whatever its branch points to then; pin the commit that `lorapress model` logs"
    )


def base_model():
    """What engines and trainers load: always a local directory (the converted builtin, a fetched hub model,
    or the user's own)."""
    if BUILTIN_MODEL:
        return f"resources/models/{BUILTIN_MODEL}"
    if HUB_MODEL_DIR:
        return f"resources/models/{HUB_MODEL_DIR}"
    return config["model"]["base"]


def base_model_input():
    """The model directory as a file dependency: every job that loads it waits for it."""
    path = base_model()
    return [path] if BUILTIN_MODEL or HUB_MODEL_DIR or os.path.isdir(path) else []


def model_arg(wildcards, input):
    """The model a job loads: its input when it is a file (derived from input, so no rerun trigger), else the id."""
    model = input.get("model")
    return model[0] if model else base_model()


def engine_params():
    """Everything about the engine that changes what it generates or scores (not the KV cache: a resource)."""
    model = {k: config["model"][k] for k in ("max_model_len", "trust_remote_code", "chat_template_kwargs")}
    return {
        "dtype": RESOLVED["dtype"],
        "backend": RESOLVED["backend"],
        "model_config": model,
        "generation": {k: config["generation"][k] for k in ("seed", "max_num_seqs")},
    }


# ---------------------------------------------------------------- datasets
FORMAT_HELP = {
    "wiki_jsonl": 'one JSON object per line: {"id", "title", "text", "questions": [{"question", "answer"}]}',
    "longmemeval": "an official LongMemEval JSON file such as longmemeval_s_cleaned.json",
}


def missing_datasets():
    """One line per dataset file that is neither there nor downloadable: what to provide, and where."""
    lines = []
    for name, dataset in sorted(config["datasets"].items()):
        if not dataset.get("download") and not os.path.exists(dataset["path"]):
            lines.append(
                f"datasets.{name}.path: {dataset['path']} does not exist; put the {dataset['format']} file there "
                f"({FORMAT_HELP[dataset['format']]}) or point datasets.{name}.path at it"
            )
    return lines


def check_data():
    """Run before any job (onstart), not at parse time: --unlock, --lint, --report and dry runs work without data."""
    missing = missing_datasets()
    if missing:
        raise WorkflowError(missing[0])
    for name in DATASETS:  # a tier larger than its dataset: count its items (prepare's output when it is fresh)
        tiers = [
            e
            for e in ("capacity", "rank_items")
            if config["experiments"][e]["enabled"]
            and name in (config["experiments"][e]["datasets"] or DATASETS)
            and any(n != "all" for n in config["experiments"][e]["items"])
        ]
        if tiers and os.path.exists(config["datasets"][name]["path"]):
            from lorapress.config import oversized_tiers

            n_items = dataset_items(name)
            too_large = oversized_tiers(config, name, n_items) if n_items is not None else None
            if too_large:
                raise WorkflowError(too_large)


def dataset_items(name):
    """How many items a dataset has: the lines of prepare's docs.jsonl when it is newer than the dataset file
    and the config's dataset entry is unchanged since (its params), else read as prepare reads it. None when
    the file is broken: its prepare job then stops with the line that names file, record and field."""
    from lorapress.io import StageError
    from lorapress.prepare import load_dataset_items

    spec, docs = config["datasets"][name], f"results/data/{name}/docs.jsonl"
    if os.path.exists(docs) and os.path.getmtime(docs) >= os.path.getmtime(spec["path"]):
        with open(docs, encoding="utf-8") as lines:
            prepared = sum(1 for _ in lines)
        # a changed limit or sample would rerun prepare: count from the file then
        if not any(spec.get(k) for k in ("limit", "sample", "question_types")):
            return prepared
    try:
        return load_dataset_items(spec)
    except (StageError, ValueError, OSError):
        return None


for line in missing_datasets():
    logger.warning(f"lorapress: {line} (a run stops before any job until it is there)")


def dataset_file(wildcards):
    """A dataset's file (fetched first when it has a download source); a missing one stops the run before any
    job (check_data), so here it is simply no input yet."""
    dataset = config["datasets"][wildcards.dataset]
    return dataset["path"] if dataset.get("download") or os.path.exists(dataset["path"]) else []


def download_source(wildcards):
    source = config["datasets"][wildcards.dataset].get("download")
    if not source or source["filename"] != wildcards.filename:
        raise WorkflowError(f"datasets.{wildcards.dataset}: no download source for {wildcards.filename}")
    return source


def prepare_options(wildcards):
    dataset = config["datasets"][wildcards.dataset]
    return as_json({k: v for k, v in dataset.items() if k not in ("format", "path", "download")})


# ---------------------------------------------------------------- compress
def dataset_files(pattern, datasets=None, **kw):
    return [pattern.format(dataset=d, **kw) for d in (DATASETS if datasets is None else datasets)]


def variant_settings(variant, datasets=None):
    """The config a variant is built from, per dataset of the job; nothing else reruns it. A command's
    params also hold the sha256 of every argument that names a file (its script): editing it reruns."""
    comp, definition = config["compression"], VARIANT_DEFINITIONS[variant]
    shared = {}
    if definition["kind"] == "generate":
        shared = {k: comp[k] for k in ("max_tokens_slack", "max_input_tokens", "repetition_penalty")}
    if definition["kind"] == "command":
        from lorapress.judge import file_sha256

        shared["files_sha256"] = {a: file_sha256(a) for a in definition["command"] if os.path.isfile(a)}
    # what changes no text is left out: the description, and the endpoint's keys unless an endpoint writes it
    unused = {"description"} | ({"base_url", "api_key_env"} if compressor_kind(definition) != "endpoint" else set())
    per_dataset = {d: settings_for(definition, d, shared) for d in (DATASETS if datasets is None else datasets)}
    return {d: {k: v for k, v in s.items() if k not in unused} for d, s in per_dataset.items()}


def variant_files(wildcards):
    """A file variant's input files, one per dataset (editing one reruns the variant)."""
    definition = VARIANT_DEFINITIONS[wildcards.variant]
    return [settings_for(definition, d)["path"] for d in DATASETS] if definition["kind"] == "file" else []


def compressor_model(variant):
    """The directory (or id) of the model that writes a generate variant: the base model, or its own."""
    definition = VARIANT_DEFINITIONS[variant]
    if compressor_kind(definition) != "model":
        return base_model()
    compressor = definition["compressor"]
    return (
        f"resources/models/{hub_dir_name(compressor, definition['compressor_revision'])}"
        if is_hub_id(compressor)
        else compressor
    )


def compressor_input(wildcards):
    """The compressor's model directory as a file dependency (fetched or converted first)."""
    path = compressor_model(wildcards.variant)
    if path == base_model():
        return base_model_input()
    return [path] if path.startswith("resources/models/") or os.path.isdir(path) else []


def compressor_arg(wildcards, input):
    """The compressor a job loads: its input when it is a file (no rerun trigger), else the id."""
    model = input.get("model")
    return model[0] if model else compressor_model(wildcards.variant)


def endpoint_tokenizer_input(wildcards):
    """An endpoint compressor's lengths are counted with the base model's tokenizer: its directory."""
    return base_model_input() if compressor_kind(VARIANT_DEFINITIONS[wildcards.variant]) == "endpoint" else []


def endpoint_tokenizer_arg(wildcards, input):
    tokenizer = input.get("tokenizer")
    return f"--model={tokenizer[0]}" if tokenizer else ""


def cpu_variant_engine(wildcards):
    """What an endpoint's generate variant counts with (context, chat template); nothing for the kinds that run
    no model, so a machine that resolves another dtype reruns none of them."""
    return compress_engine() if compressor_kind(VARIANT_DEFINITIONS[wildcards.variant]) == "endpoint" else "{}"


def compress_engine():
    """Engine params of the variants a model writes (the same for every compressor: dtype, backend, context)."""
    return as_json({**engine_params(), "backend": RESOLVED["compression_backend"]})


def shard_files(wildcards, suffix):
    n = SHARDS[wildcards.dataset]
    return [f"results/compressed/{wildcards.dataset}/shards/{wildcards.variant}.{k}-of-{n}.{suffix}" for k in range(n)]


def compressed_inputs():
    """(dataset, variant, file) of every variant, for stats."""
    return [(d, v, f"results/compressed/{d}/{v}.jsonl") for d in DATASETS for v in VARIANTS_USED]


# ---------------------------------------------------------------- train
def train_settings(wildcards):
    train = {k: v for k, v in config["train"].items() if k != "seeds"}
    train.update(
        rank=int(wildcards.rank),
        seed=int(wildcards.seed),
        items=None if wildcards.n_items == "all" else int(wildcards.n_items),
        compute_dtype=RESOLVED["train_dtype"],
        reference_rank=config["train"]["rank"],
        trust_remote_code=config["model"]["trust_remote_code"],
    )
    return as_json(train)


# ---------------------------------------------------------------- evaluate, judge, decompose
@lru_cache(maxsize=None)
def chunks_of(dataset):
    """The dataset's evaluation chunks (the config does not change while Snakemake runs)."""
    return eval_chunks(config, dataset)


@lru_cache(maxsize=None)
def runs_of(dataset):
    """(experiment, run) pairs of the dataset."""
    return experiment_runs(config, dataset)


def chunk_runs(wildcards):
    chunks = chunks_of(wildcards.dataset)
    if wildcards.chunk not in chunks:
        raise WorkflowError(f"no evaluation chunk {wildcards.chunk} for dataset {wildcards.dataset}")
    return chunks[wildcards.chunk]


def adapters_for_chunk(wildcards):
    return [run.adapter_dir for run in chunk_runs(wildcards) if not run.is_baseline]


def chunk_runs_json(wildcards):
    return as_json([{"run_id": r.run_id, "adapter": r.adapter_dir, "rank": r.rank} for r in chunk_runs(wildcards)])


def chunk_names(dataset):
    return list(chunks_of(dataset))


def answer_settings():
    """What changes an answer or its scores (not open_book, not the chunking: the runs param carries that)."""
    keys = ("max_tokens", "repetition_penalty", "system_prompt", "self_check", "max_loras")
    return as_json({k: config["evaluate"][k] for k in keys})


def judge_settings():
    """The judge's config without api_key_env (renaming the variable changes no verdict), and the sha256 of
    judge.templates: editing the templates file re-judges, as a changed prompt must."""
    settings = {k: v for k, v in config["judge"].items() if k != "api_key_env"}
    if settings.get("templates"):
        from lorapress.judge import file_sha256

        if not os.path.isfile(settings["templates"]):
            raise WorkflowError(f"config judge.templates: {settings['templates']} does not exist")
        settings["templates_sha256"] = file_sha256(settings["templates"])
    return as_json(settings)


def judge_templates_input():
    """judge.templates as an input file (so a job waits for it and sees it), none when the criteria are ours."""
    path = config["judge"].get("templates")
    return [path] if path else []


def control_questions():
    path = config["evaluate"]["control"]
    return [path] if path else []


def open_book_variants():
    return VARIANTS_USED if config["evaluate"]["open_book"] else []


# ---------------------------------------------------------------- aggregate and report
def experiments_json():
    return as_json({d: [[e, r.run_id] for e, r in runs_of(d)] for d in DATASETS})


def table_keys():
    """(experiment, dataset) of every table aggregate writes: compression always, the grids where they run."""
    keys = []
    for dataset in DATASETS:
        experiments = {"compression", *(e for e, _ in runs_of(dataset))}
        keys += [(e, dataset) for e in sorted(experiments)]
    return keys


def table_files():
    return [f"results/tables/{e}_{d}.csv" for e, d in table_keys()]


def aggregate_inputs(kind):
    """Every per-chunk file aggregate reads, as (dataset, path)."""
    pattern = {
        "answers": "results/answers/{dataset}/{chunk}.jsonl",
        "answers_meta": "results/answers/{dataset}/{chunk}.meta.json",
        "verdicts": "results/verdicts/{dataset}/{chunk}.jsonl",
        "verdicts_meta": "results/verdicts/{dataset}/{chunk}.meta.json",
    }[kind]
    return [(d, pattern.format(dataset=d, chunk=c)) for d in DATASETS for c in chunk_names(d)]


def decomposition_tables():
    """One decomposition table per dataset, when the open-book measurement runs."""
    return dataset_files("results/tables/decomposition_{dataset}.csv") if config["evaluate"]["open_book"] else []


def decomposition_inputs():
    return [(d, v, f"results/decompose/{d}/{v}.jsonl") for d in DATASETS for v in open_book_variants()]


def pairs_arg(flag, pairs):
    """`--flag a b --flag c d ...` for a list of tuples (every path passed, none derived by the library)."""
    return " ".join(f"{flag} " + " ".join(str(x) for x in pair) for pair in pairs)


def benchmark_files():
    """(stage, job, file) of the benchmark of every heavy job of this config: the report's cost table reads
    exactly these, so files of runs no longer in the config never reach it."""
    files = [("model", BUILTIN_MODEL, f"results/benchmarks/model/{BUILTIN_MODEL}.tsv")] if BUILTIN_MODEL else []
    for v in VARIANTS_USED:
        if UNSHARDED or v in CPU_VARIANTS:
            files.append(("compress", v, f"results/benchmarks/compress/{v}.tsv"))
        for d in DATASETS if v not in CPU_VARIANTS else []:
            for k in range(SHARDS.get(d, 1) if d not in UNSHARDED else 0):
                n = SHARDS[d]
                files.append(("compress", f"{d}/{v}.{k}-of-{n}", f"results/benchmarks/compress/{d}/{v}.{k}-of-{n}.tsv"))
    for d in DATASETS:
        for run in {r for _, r in runs_of(d) if not r.is_baseline}:
            job = f"{d}/{run.condition}/{run.tag}"
            files.append(("train", job, f"results/benchmarks/train/{job}.tsv"))
        for c in chunk_names(d):
            files.append(("evaluate", f"{d}/{c}", f"results/benchmarks/evaluate/{d}/{c}.tsv"))
            files.append(("judge", f"{d}/{c}", f"results/benchmarks/judge/{d}/{c}.tsv"))
    for v in open_book_variants():
        files.append(("decompose", v, f"results/benchmarks/decompose/{v}.tsv"))
    return sorted(files)


def report_metadata():
    """What the report shows of the run: the config without resources (editing resources reruns nothing),
    what `auto` resolved to here, and the code fingerprints. The judge's key variable is left out: renaming
    where the key lives changes no number."""
    shown = {k: v for k, v in config.items() if k != "resources"}
    shown["judge"] = {k: v for k, v in config["judge"].items() if k != "api_key_env"}
    return as_json({"config": shown, **RESOLVED, "fingerprints": CODE})


# ---------------------------------------------------------------- targets
def final_outputs():
    return ["results/report.html"]
