"""Which dtype the machine computes fast in, and the facts that choice rests on.

bfloat16 halves memory and is exact enough for generation and LoRA training, but
only hardware that does it natively is fast in it: a CPU with AVX512-BF16 or AMX,
or a GPU of compute capability 8.0 or newer. On an AVX2-only CPU, torch emulates
bf16 and a matmul runs ~37x slower than float32, so `auto` picks float32 there;
on an older GPU it picks float16. An explicit dtype always wins.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import asdict, dataclass, field
from functools import lru_cache

DTYPES = ("float32", "bfloat16", "float16")
AUTO = "auto"
# CPU flags (as /proc/cpuinfo names them) that make bf16 math native.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Flags worth recording beside a timing: they decide how fast the CPU computes.
CPU_REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class Hardware:
    """What the dtype choice depends on; injected in tests, detected otherwise."""

    cpu_model: str = ""
    cpu_flags: tuple[str, ...] = ()
    gpu_name: str | None = None
    gpu_capability: tuple[int, int] | None = None  # CUDA compute capability of the first GPU
    notes: list[str] = field(default_factory=list, compare=False)

    @property
    def cpu_bf16(self) -> bool:
        return any(flag in self.cpu_flags for flag in CPU_BF16_FLAGS)

    def describe(self) -> dict:
        facts = asdict(self)
        facts["cpu_flags"] = [f for f in CPU_REPORTED_FLAGS if f in self.cpu_flags]
        facts["cpu_bf16_native"] = self.cpu_bf16
        facts.pop("notes")
        return facts


class DtypeError(ValueError):
    """`auto` cannot be decided where the choice is made (e.g. GPU jobs planned on a CPU login node)."""


def choose_dtype(requested: str, hardware: Hardware, *, on_gpu: bool) -> tuple[str, str]:
    """(dtype, reason). `on_gpu`: the jobs that compute will run on a GPU."""
    if requested != AUTO:
        if requested not in DTYPES:
            raise DtypeError(f"unknown dtype {requested!r}; choose auto or one of {', '.join(DTYPES)}")
        return requested, "set explicitly"
    if on_gpu:
        if hardware.gpu_capability is None:
            raise DtypeError("auto needs the GPU the jobs run on to be visible here; set it explicitly "
                             "(bfloat16 for compute capability >= 8.0, float16 below)")
        major, minor = hardware.gpu_capability
        if (major, minor) >= (8, 0):
            return "bfloat16", f"GPU {hardware.gpu_name} (compute capability {major}.{minor} >= 8.0) does bf16 natively"
        return "float16", f"GPU {hardware.gpu_name} (compute capability {major}.{minor} < 8.0) has no fast bf16"
    if hardware.cpu_bf16:
        native = [f for f in CPU_BF16_FLAGS if f in hardware.cpu_flags]
        return "bfloat16", f"CPU with {'/'.join(native)} does bf16 natively"
    return "float32", "CPU without AVX512-BF16 or AMX: bf16 would be emulated (tens of times slower)"


# ---------------------------------------------------------------- detection (the edges)
def _cpu_info() -> tuple[str, tuple[str, ...]]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
    except OSError:  # not Linux: no flags known, so auto stays on float32
        return platform.processor() or platform.machine(), ()
    model, flags = "", ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = tuple(sorted(set(value.split())))
    return model or platform.machine(), flags


def _gpu_info() -> tuple[str | None, tuple[int, int] | None]:
    """The first NVIDIA GPU from nvidia-smi (cheap: no CUDA context, no torch import)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None, None
    first = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    if "," not in first:
        return None, None
    name, cap = (part.strip() for part in first.rsplit(",", 1))
    try:
        major, minor = (int(x) for x in cap.split("."))
    except ValueError:
        return name, None
    return name, (major, minor)


@lru_cache(maxsize=1)
def detect() -> Hardware:
    model, flags = _cpu_info()
    gpu_name, capability = _gpu_info()
    return Hardware(cpu_model=model, cpu_flags=flags, gpu_name=gpu_name, gpu_capability=capability)


def warn_if_emulated(dtype: str, hardware: Hardware | None = None) -> str | None:
    """A warning for a job told to compute in bf16 on a CPU that only emulates it."""
    hardware = hardware or detect()
    if dtype == "bfloat16" and hardware.gpu_capability is None and not hardware.cpu_bf16:
        return ("computing in bfloat16 on a CPU without AVX512-BF16 or AMX: bf16 is emulated here and runs tens "
                "of times slower than float32 (set model.dtype: auto or float32)")
    return None
