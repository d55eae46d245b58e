"""Which floating-point precision the network runs in (``train.precision``, ``sample.precision``).

``auto`` picks bf16 autocast where the hardware computes bf16 natively -- every CUDA GPU we
target, and CPUs with the ``avx512_bf16`` or ``amx_bf16`` instructions (measured on such a CPU:
1.8x faster training iterations, 2-3x faster denoising steps than fp32) -- and fp32 elsewhere
(CPUs without native bf16 emulate it and are slower than fp32).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import ContextManager

import torch

#: /proc/cpuinfo flags that mean the CPU multiplies bf16 natively
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The native-bf16 flags this CPU advertises (empty when none or not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``auto``/``fp32``/``bf16`` on ``device`` -> the autocast dtype (``None`` = plain fp32)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if device.type == "cuda" or (device.type == "cpu" and cpu_bf16_flags()):
        return torch.bfloat16
    return None


def describe(precision: str, device: torch.device) -> str:
    """One line for the logs, e.g. ``bf16 autocast (precision=auto: CPU has avx512_bf16)``."""
    dtype = autocast_dtype(precision, device)
    name = "bf16 autocast" if dtype is not None else "fp32"
    if precision != "auto":
        return f"{name} (precision={precision})"
    if device.type == "cuda":
        why = "CUDA device"
    elif cpu_bf16_flags():
        why = f"CPU has {', '.join(cpu_bf16_flags())}"
    else:
        why = f"CPU has no native bf16 ({'/'.join(BF16_CPU_FLAGS)})"
    return f"{name} (precision=auto: {why})"


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """``torch.autocast`` for ``dtype``, or a no-op context for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
