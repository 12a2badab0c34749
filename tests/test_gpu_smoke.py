"""scripts/gpu_smoke.py runs here on the CPU (--device cpu --tiny) and writes its figures as JSON."""

import json
import os
import subprocess
import sys


from conftest import REPO

EMBEDDED = REPO / "resources/models/smollm2-135m-instruct"  # made by `lorapress model` (make run)


def smoke(tmp_path, *args: str) -> dict:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHONPATH": str(REPO / "src")}
    run = subprocess.run([sys.executable, str(REPO / "scripts/gpu_smoke.py"), "--device", "cpu", "--tiny",
                          "--steps", "1", "--wheels", str(tmp_path / "no-wheels"), *args],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads((tmp_path / "out/gpu_smoke.json").read_text())


def embedded_model_without_weights(folder):
    """What `lorapress model` writes for the embedded model, minus its weights: the GGUF package's config,
    tokenizer and chat template (a fresh clone has no converted model; part (b) gives it random weights)."""
    import importlib.util
    from pathlib import Path

    from transformers import AutoConfig, AutoTokenizer

    from lorapress.model import BUILTINS

    package, gguf = BUILTINS["smollm2-135m-instruct"]
    source = Path(list(importlib.util.find_spec(package).submodule_search_locations)[0])
    AutoTokenizer.from_pretrained(source, gguf_file=gguf).save_pretrained(folder)
    config = AutoConfig.from_pretrained(source, gguf_file=gguf)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    return folder


def embedded_model(tmp_path, background_rehearsal):
    """The embedded model's config and tokenizer: as `make run` converted it here, or as the cluster rehearsal's
    run did (its first job, long done by now), or read from the GGUF package (~15 s of CPU)."""
    if (EMBEDDED / "tokenizer.json").is_file():
        return EMBEDDED
    converted = background_rehearsal.converted_model() if background_rehearsal is not None else None
    if converted is not None and (converted / "tokenizer.json").is_file():
        return converted
    return embedded_model_without_weights(tmp_path / "model")


def test_tiny_smoke_on_cpu(tmp_path, background_rehearsal):
    """One run (imports cost most of it): (a) a QLoRA step of a tiny model of Qwen3-8B's shape, with and without
    checkpointing; (b) the embedded model's LoRA training and answers on a weightless copy of it (random tiny
    weights, its real tokenizer and chat template), as it is carried to a lent GPU."""
    source = embedded_model(tmp_path, background_rehearsal)
    skeleton = tmp_path / "skeleton"
    subprocess.run([sys.executable, str(REPO / "scripts/gpu_smoke.py"), "--write-skeleton", str(source),
                    str(skeleton)], check=True, capture_output=True, timeout=60)
    assert not list(skeleton.glob("*.safetensors")) and (skeleton / "tokenizer.json").is_file()
    args = ["--model-dir", str(skeleton), "--epochs", "4"]
    result = smoke(tmp_path, *args)
    shape = result["shape"]
    assert shape["config"]["num_hidden_layers"] == 2 and (shape["batch"], shape["length"]) == (2, 32)
    assert shape["method"] == ("qlora" if result["bitsandbytes"]["version"] else "lora")
    # LoRA r16 on q/k/v/o of the tiny shape: 2 layers x 16 x ((64+64) + (64+32) + (64+32) + (64+64))
    assert shape["trainable_params"] == 2 * 16 * (128 + 96 + 96 + 128)
    for key in ("with_checkpointing", "without_checkpointing"):
        run = shape[key]
        assert run["status"] == "ok" and len(run["seconds_per_step"]) == 1 and run["peak_gib"] > 0
        assert run["estimate_gib"]["total_gib"] > 0
    with_, without = shape["with_checkpointing"]["estimate_gib"], shape["without_checkpointing"]["estimate_gib"]
    assert with_["activations_gib"] < without["activations_gib"]
    assert result["errors"] == []
    emb = result["embedded"]
    assert emb["weights"].startswith("random (tiny shape")
    assert emb["optimizer_steps"] == 8  # 8 texts in batches of 4, 4 epochs
    assert emb["base_reproducible"] and emb["changed"] >= 1 and emb["device_of_adapter"] == "cpu"
