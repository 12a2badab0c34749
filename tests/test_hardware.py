"""The dtype choice, with the machine's capabilities injected (never this machine's own)."""

import pytest

from lorapress.hardware import DtypeError, Hardware, choose_dtype, warn_if_emulated

AVX2_ONLY = Hardware(cpu_model="AMD EPYC (AVX2)", cpu_flags=("avx", "avx2", "fma"))
AVX512_BF16 = Hardware(cpu_model="Xeon (Cooper Lake)", cpu_flags=("avx2", "avx512f", "avx512_bf16"))
AMX = Hardware(cpu_model="Xeon (Sapphire Rapids)", cpu_flags=("avx2", "avx512f", "amx_bf16", "amx_tile"))
AVX512_NO_BF16 = Hardware(cpu_model="Xeon (Skylake)", cpu_flags=("avx2", "avx512f"))
A100 = Hardware(cpu_flags=("avx2",), gpu_name="NVIDIA A100", gpu_capability=(8, 0))
V100 = Hardware(cpu_flags=("avx2",), gpu_name="Tesla V100", gpu_capability=(7, 0))


@pytest.mark.parametrize("hardware, on_gpu, expected", [
    (AVX2_ONLY, False, "float32"),  # bf16 emulated: ~37x slower than fp32 there
    (AVX512_NO_BF16, False, "float32"),
    (AVX512_BF16, False, "bfloat16"),
    (AMX, False, "bfloat16"),
    (A100, True, "bfloat16"),
    (V100, True, "float16"),
])
def test_auto_picks_what_the_hardware_computes_fast(hardware, on_gpu, expected):
    dtype, reason = choose_dtype("auto", hardware, on_gpu=on_gpu)
    assert dtype == expected and reason


def test_an_explicit_dtype_always_wins():
    assert choose_dtype("bfloat16", AVX2_ONLY, on_gpu=False) == ("bfloat16", "set explicitly")
    assert choose_dtype("float32", A100, on_gpu=True)[0] == "float32"


def test_auto_for_gpu_jobs_needs_the_gpu_visible():
    with pytest.raises(DtypeError, match="set it explicitly"):
        choose_dtype("auto", AVX2_ONLY, on_gpu=True)


def test_bf16_on_an_emulating_cpu_is_warned_about():
    assert "emulated" in warn_if_emulated("bfloat16", AVX2_ONLY)
    assert warn_if_emulated("bfloat16", AVX512_BF16) is None
    assert warn_if_emulated("float32", AVX2_ONLY) is None


def test_described_flags_are_the_ones_that_matter():
    facts = AMX.describe()
    assert facts["cpu_flags"] == ["avx2", "avx512f", "amx_bf16", "amx_tile"] and facts["cpu_bf16_native"] is True
