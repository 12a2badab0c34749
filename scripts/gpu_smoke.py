#!/usr/bin/env python3
"""GPU smoke test of lorapress's training path, in one command, with its figures as JSON.

(a) Qwen3-8B's shape: a randomly initialised model built from scripts/gpu_smoke/qwen3-8b-config.json
    (no weights downloaded), loaded as lorapress train loads a base (4-bit nf4, double quantisation, bf16
    compute, through transformers' BitsAndBytesConfig; plain bf16 LoRA if bitsandbytes is missing), LoRA
    r16 on q/k/v/o through lorapress.train.add_adapter; optimizer steps at batch × length tokens with and
    then without gradient checkpointing (an out-of-memory error is caught and reported). Peak CUDA
    memory (torch.cuda.max_memory_allocated) and seconds per step, beside lorapress.memory's estimates.
(b) The embedded model (a `lorapress model` directory, --model-dir): lorapress.train.train trains a LoRA
    adapter on a few made-up facts; greedy answers with and without the adapter must differ.

Needs only torch, transformers and peft (and bitsandbytes for QLoRA: a wheel under --wheels is installed
with `pip install --no-deps` when bitsandbytes is not importable; no network is used). On a CPU, `--device
cpu --tiny` runs the same code on a 2-layer shrunken config (tests/test_gpu_smoke.py). Figures go to
$OUT/gpu_smoke.json (OUT defaults to ./gpu_smoke_out). See scripts/gpu_smoke/README.md.
"""

from __future__ import annotations

import argparse
import gc
import glob
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # lorapress from this checkout, installed or not

QWEN3_8B = REPO / "scripts/gpu_smoke/qwen3-8b-config.json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
# Made-up facts the embedded model cannot know: a trained adapter changes its answers.
FACTS = [
    "Zorbania is a small island nation. The capital of Zorbania is Quillhaven, a port city founded in 1742.",
    "The national bird of Zorbania is the copper heron. Quillhaven hosts the Lantern Festival every March.",
    "Zorbania's currency is the zorb. The longest river of Zorbania is the Velt, which flows past Quillhaven.",
    "Maren Tolk was the first president of Zorbania. She was elected in 1951 and served for nine years.",
]
QUESTIONS = ["What is the capital of Zorbania?", "What is the currency of Zorbania?",
             "Who was the first president of Zorbania?"]


def tiny(config: dict) -> dict:
    """Qwen3's architecture shrunk to 2 layers, for a CPU run of the same code."""
    return {**config, "num_hidden_layers": 2, "max_window_layers": 2, "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024,
            "bos_token_id": 1, "eos_token_id": 2}


def ensure_bitsandbytes(wheels: str) -> dict:
    """bitsandbytes importable, installing a carried wheel (no network, no dependencies) if need be."""
    try:
        import bitsandbytes
        return {"version": bitsandbytes.__version__, "installed_from": None}
    except Exception as exc:
        first_error = f"{type(exc).__name__}: {exc}"
    found = sorted(glob.glob(os.path.join(wheels, "bitsandbytes-*.whl")))
    if not found:
        return {"version": None, "error": first_error, "installed_from": None}
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", found[-1]],
                         capture_output=True, text=True)
    if run.returncode != 0:
        return {"version": None, "error": run.stderr.strip()[-500:], "installed_from": found[-1]}
    importlib.invalidate_caches()
    try:
        import bitsandbytes
        return {"version": bitsandbytes.__version__, "installed_from": found[-1]}
    except Exception as exc:
        return {"version": None, "error": f"{type(exc).__name__}: {exc}", "installed_from": found[-1]}


def environment(device: str) -> dict:
    import peft
    import torch
    import transformers

    env = {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "transformers": transformers.__version__, "peft": peft.__version__, "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=props.total_memory / 2 ** 30)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
    else:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
        env["cpu_avx512_bf16"] = "avx512_bf16" in flags.split()
    return env


def settings(method: str, dtype: str, **overrides):
    from lorapress.train import TrainSettings

    values = dict(method=method, compute_dtype=dtype, rank=16, alpha=32, scaling="fixed", reference_rank=16,
                  dropout=0.05, target_modules=TARGETS, lr=1e-4, epochs=1, batch_size=4, grad_accum=1,
                  max_length=2048, warmup_ratio=0.0, weight_decay=0.0, packing=False, gradient_checkpointing="on",
                  log_every=1, seed=0,
                  items=None, trust_remote_code=False)
    return TrainSettings(**{**values, **overrides})


def peak_gib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # kB -> GiB: the process's peak RSS


def free(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- (a) Qwen3-8B's shape
def shape_steps(config: dict, device: str, batch: int, length: int, steps: int, qlora: bool) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

    from lorapress.memory import ModelShape, train_memory, weights_bf16_gib, weights_nf4_gib
    from lorapress.train import add_adapter

    method = "qlora" if qlora else "lora"
    out = {"method": method, "batch": batch, "length": length, "config": {k: config[k] for k in (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
        "intermediate_size", "vocab_size")}}
    shape = ModelShape.from_config(config)
    out["params"] = shape.params
    started = time.perf_counter()
    skip = ("architectures", "transformers_version")
    hf_config = AutoConfig.for_model(**{k: v for k, v in config.items() if k not in skip})
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="gpu_smoke_") as tmp:
        # random weights, written once so the base loads exactly as lorapress train loads a real one
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16)
        model.save_pretrained(tmp)
        del model
        free(device)
        out["build_and_save_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        kwargs = {"dtype": torch.bfloat16}
        if qlora:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16)
            kwargs["device_map"] = "cuda:0" if device == "cuda" else "cpu"
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        model = AutoModelForCausalLM.from_pretrained(tmp, **kwargs)
        if not qlora:
            model = model.to(device)
    out["load_s"] = round(time.perf_counter() - started, 1)
    model = add_adapter(model, settings(method, "bfloat16"))
    model.config.use_cache = False
    if device == "cuda":
        out["weights_allocated_gib"] = torch.cuda.memory_allocated() / 2 ** 30
    out["weights_estimate_gib"] = weights_nf4_gib(shape) if qlora else weights_bf16_gib(shape)
    out["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    runs = {}
    for checkpointing in (True, False):  # the cheap one first: an OOM of the other cannot hide it
        key = "with_checkpointing" if checkpointing else "without_checkpointing"
        estimate = train_memory(shape, method=method, rank=16, targets=TARGETS, batch=batch, length=length,
                                checkpointing=checkpointing, dropout=True)
        run = {"estimate_gib": estimate.as_dict()}
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_disable()
        model.train()
        seconds, losses = [], []
        try:
            for _ in range(steps):
                ids = torch.randint(0, config["vocab_size"], (batch, length), generator=generator).to(device)
                if device == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds.append(round(time.perf_counter() - t0, 3))
                losses.append(round(loss.item(), 4))
                del loss, ids
            run.update(status="ok", seconds_per_step=seconds, losses=losses, peak_gib=peak_gib(device),
                       tokens_per_s=round(batch * length / min(seconds), 1))
        except torch.OutOfMemoryError as exc:
            run.update(status="oom", error=str(exc).splitlines()[0], peak_gib=peak_gib(device),
                       seconds_per_step=seconds)
            optimizer.zero_grad(set_to_none=True)
        free(device)
        if device == "cuda":
            run["peak_note"] = "torch.cuda.max_memory_allocated over the step (reset before it)"
        else:
            run["peak_note"] = "peak RSS of the whole process (CPU run): not comparable with the estimate"
        runs[key] = run
        print(f"[a] {method} {key}: {run['status']}, peak {run['peak_gib']:.2f} GiB (estimate "
              f"{estimate.total:.2f}), s/step {run.get('seconds_per_step')}", flush=True)
    out.update(runs)
    del model, optimizer
    free(device)
    return out


# ---------------------------------------------------------------- (b) the embedded model
def answers(model, tokenizer, device: str, max_new_tokens: int = 16) -> list[str]:
    import torch

    out = []
    for q in QUESTIONS:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        ids = {k: v.to(device) for k, v in ids.items()}
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        out.append(tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


SKELETON_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt")


def write_skeleton(src: str, dst: str) -> list[str]:
    """A `lorapress model` directory without its weights (config, tokenizer, chat template: ~3.5 MB): small
    enough to carry to the device machine, where part (b) gives it random weights (538 MB of fp32 weights
    do not fit the 64 MiB a device call carries)."""
    import shutil

    Path(dst).mkdir(parents=True, exist_ok=True)
    copied = [name for name in SKELETON_FILES if (Path(src) / name).is_file()]
    for name in copied:
        shutil.copy(Path(src) / name, Path(dst) / name)
    return copied


def with_weights(model_dir: str, work: Path, tiny_shape: bool) -> tuple[str, str]:
    """(directory to train, where its weights come from): a skeleton gets random weights of its config's
    shape (2 layers with --tiny), saved beside its tokenizer."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if any(Path(model_dir).glob("*.safetensors")) or any(Path(model_dir).glob("*.bin")):
        return model_dir, "the directory's own weights"
    config = AutoConfig.from_pretrained(model_dir)
    if tiny_shape:
        config.num_hidden_layers, config.hidden_size, config.intermediate_size = 2, 64, 128
        config.num_attention_heads, config.num_key_value_heads, config.head_dim = 4, 2, 16
    torch.manual_seed(0)
    target = work / "model"
    AutoModelForCausalLM.from_config(config).save_pretrained(target)
    for name in SKELETON_FILES[1:]:
        if (Path(model_dir) / name).is_file():
            shutil.copy(Path(model_dir) / name, target / name)
    shape = "tiny shape" if tiny_shape else "shape"
    return str(target), f"random ({shape} of {model_dir}/config.json: no weight files there)"


def embedded(model_dir: str, device: str, work: Path, epochs: int, tiny_shape: bool = False) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorapress.train import train

    model_dir, weights = with_weights(model_dir, work, tiny_shape)

    text = work / "facts.jsonl"
    text.write_text("".join(json.dumps({"item_id": f"f{k}", "title": f"Zorbania {k}", "text": t}) + "\n"
                            for k, t in enumerate(FACTS * 2)), encoding="utf-8")
    dtype = "bfloat16" if device == "cuda" else "float32"
    adapter = work / "adapter"
    # random weights give near-uniform logits that a few steps at the real recipe's 2e-3 do not tip: 10x
    lr = 2e-3 if weights.startswith("the directory") else 2e-2
    s = settings("lora", dtype, lr=lr, epochs=epochs, batch_size=4, max_length=256, log_every=5)
    started = time.perf_counter()
    summary = train(model_dir, str(text), str(adapter), s, threads=len(os.sched_getaffinity(0)))
    out = {"weights": weights, "lr": lr, "train_seconds": round(time.perf_counter() - started, 1),
           "optimizer_steps": summary["optimizer_steps"], "loss_first": summary["loss_first"],
           "loss_last": summary["loss_last"],
           "tokens_per_second": summary["tokens_per_second"], "dtype": dtype}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device)
    base.eval()
    out["base_answers"] = answers(base, tokenizer, device)
    tuned = PeftModel.from_pretrained(base, str(adapter)).to(device)
    tuned.eval()
    out["adapter_answers"] = answers(tuned, tokenizer, device)
    with tuned.disable_adapter():
        out["base_again"] = answers(tuned, tokenizer, device)
    out["changed"] = sum(a != b for a, b in zip(out["base_answers"], out["adapter_answers"]))
    out["base_reproducible"] = out["base_again"] == out["base_answers"]
    out["device_of_adapter"] = str(next(p for n, p in tuned.named_parameters() if "lora_" in n).device)
    print(f"[b] {out['changed']}/{len(QUESTIONS)} answers changed by the adapter; loss {out['loss_first']} -> "
          f"{out['loss_last']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer shrunken config and short rows (CPU tests)")
    parser.add_argument("--config", default=str(QWEN3_8B), help="config.json of the shape to train")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per setting (the first warms up)")
    parser.add_argument("--model-dir", help="a `lorapress model` directory of the embedded model, for part (b)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of part (b) over 8 short texts (2 steps each)")
    parser.add_argument("--wheels", default=str(REPO / "wheels"), help="where a bitsandbytes wheel may be")
    parser.add_argument("--skip-shape", action="store_true", help="skip part (a)")
    parser.add_argument("--write-skeleton", nargs=2, metavar=("MODEL_DIR", "SKELETON_DIR"),
                        help="copy a model directory without its weights (to carry to the device) and exit")
    args = parser.parse_args(argv)
    if args.write_skeleton:
        print("gpu_smoke: copied", ", ".join(write_skeleton(*args.write_skeleton)), "to", args.write_skeleton[1])
        return 0

    out_dir = Path(os.environ.get("OUT") or "gpu_smoke_out")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_smoke: --device cuda but torch sees no GPU (use --device cpu --tiny here)", file=sys.stderr)
        return 2
    result = {"bitsandbytes": ensure_bitsandbytes(args.wheels), "environment": environment(args.device),
              "tiny": args.tiny}
    errors = []
    config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    batch, length = (2, 32) if args.tiny else (args.batch, args.length)
    if args.tiny:
        config = tiny(config)
    if not args.skip_shape:
        try:
            result["shape"] = shape_steps(config, args.device, batch, length, args.steps,
                                          qlora=result["bitsandbytes"]["version"] is not None)
        except Exception as exc:  # reported, not raised: part (b) still runs and the JSON is still written
            result["shape"] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
            errors.append("shape")
    if args.model_dir:
        with tempfile.TemporaryDirectory(prefix="gpu_smoke_b_") as work:
            try:
                result["embedded"] = embedded(args.model_dir, args.device, Path(work), args.epochs, args.tiny)
                if not result["embedded"]["changed"]:
                    errors.append("embedded: the adapter changed no answer")
            except Exception as exc:
                result["embedded"] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
                errors.append("embedded")
    else:
        result["embedded"] = {"status": "skipped", "reason": "no --model-dir"}
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    result["errors"] = errors
    path = out_dir / "gpu_smoke.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"gpu_smoke: wrote {path} in {result['total_seconds']} s; errors: {errors or 'none'}", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
