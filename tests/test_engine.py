"""What a vLLM engine is started with, per platform, and where the base model comes from."""

import os
import subprocess
import sys

from lorapress.engine import EngineSettings, vllm_engine_args
from lorapress.model import hub_dir_name, is_hub_id, is_pinned

SETTINGS = EngineSettings(model="resources/models/m", dtype="bfloat16", max_model_len=8192, seed=0, max_num_seqs=256,
                          trust_remote_code=False, chat_template_kwargs={})


def test_cuda_graphs_on_gpus_eager_on_cpus():
    """Old: enforce_eager=True everywhere (no CUDA graphs on GPUs: decode-bound compression several times slower
    than config/throughput.yaml assumes), and no way to set gpu_memory_utilization."""
    gpu = vllm_engine_args(SETTINGS, on_cpu=False, gpu_memory_utilization=0.8)
    assert gpu["enforce_eager"] is False and gpu["gpu_memory_utilization"] == 0.8
    cpu = vllm_engine_args(SETTINGS, on_cpu=True, gpu_memory_utilization=0.8)
    assert cpu["enforce_eager"] is True and "gpu_memory_utilization" not in cpu


def test_lora_slots_and_targets():
    args = vllm_engine_args(SETTINGS, on_cpu=False, max_loras=8, max_lora_rank=16, lora_target_modules=["v_proj", "q_proj"])
    assert (args["enable_lora"], args["max_loras"], args["max_lora_rank"]) == (True, 9, 16)
    assert args["lora_target_modules"] == ["q_proj", "v_proj"]
    assert "enable_lora" not in vllm_engine_args(SETTINGS, on_cpu=False)


def test_a_hub_model_has_a_directory_named_by_its_revision(tmp_path):
    assert is_hub_id("Qwen/Qwen3-8B") and not is_hub_id("builtin:smollm2-135m-instruct") and not is_hub_id(str(tmp_path))
    assert hub_dir_name("Qwen/Qwen3-8B", None) == "Qwen--Qwen3-8B@main"
    commit = "a" * 40
    assert hub_dir_name("Qwen/Qwen3-8B", commit) == f"Qwen--Qwen3-8B@{commit}" and is_pinned(commit)
    assert not is_pinned("main") and not is_pinned(None)


def test_fetching_without_the_hub_is_one_clear_line_and_writes_nothing(tmp_path):
    out = tmp_path / "resources/models/Qwen--Qwen3-8B@main"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "lorapress", "model", "--hub", "Qwen/Qwen3-8B", "--revision", "main",
                          "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and not out.exists()
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("lorapress model: error: model.base Qwen/Qwen3-8B@main: cannot fetch it") and \
        "where the hub is reachable" in last
