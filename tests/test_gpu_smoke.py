"""scripts/gpu_smoke.py runs here on the CPU (--device cpu --tiny) and writes its figures as JSON."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

EMBEDDED = REPO / "resources/models/smollm2-135m-instruct"  # made by `lorapress model` (make run)


def smoke(tmp_path, *args: str) -> dict:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHONPATH": str(REPO / "src")}
    run = subprocess.run([sys.executable, str(REPO / "scripts/gpu_smoke.py"), "--device", "cpu", "--tiny",
                          "--steps", "1", "--wheels", str(tmp_path / "no-wheels"), *args],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads((tmp_path / "out/gpu_smoke.json").read_text())


def test_tiny_smoke_on_cpu(tmp_path):
    """One run (imports cost most of it): (a) always; (b) on a weightless copy of the embedded model when
    `lorapress model` has converted it here (random tiny weights, its real tokenizer and chat template)."""
    args = []
    if (EMBEDDED / "tokenizer.json").is_file():
        skeleton = tmp_path / "skeleton"
        subprocess.run([sys.executable, str(REPO / "scripts/gpu_smoke.py"), "--write-skeleton", str(EMBEDDED),
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
    if not args:
        assert emb["status"] == "skipped"
        pytest.skip("part (b) needs the embedded model converted (lorapress model); part (a) passed")
    assert emb["weights"].startswith("random (tiny shape")
    assert emb["optimizer_steps"] == 8  # 8 texts in batches of 4, 4 epochs
    assert emb["base_reproducible"] and emb["changed"] >= 1 and emb["device_of_adapter"] == "cpu"
