"""How the process runs: on which device, in which precision, and how it stops on a signal.

* Device and precision (``train.device``/``train.precision``, ``sample.*``, ...): :func:`resolve_device`,
  :func:`autocast_dtype`, :func:`describe`. ``auto`` precision picks bf16 autocast where the hardware
  computes bf16 natively -- every CUDA GPU we target, and CPUs with the ``avx512_bf16`` or ``amx_bf16``
  instructions (measured on such a CPU: 1.8x faster training iterations, 2-3x faster denoising steps
  than fp32) -- and fp32 elsewhere (CPUs without native bf16 emulate it and are slower than fp32).
* Signals: how a command stops on SIGTERM/SIGUSR1/Ctrl-C lives in :mod:`sindiffusion.signals`
  (standard library only, so the command line installs it before importing torch); its names are
  re-exported here.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path
from typing import ContextManager

import torch

from .signals import EXIT_RESUMABLE, STOP_SIGNALS, Preempted, StopSignals  # noqa: F401  (re-exported)


# ---------------------------------------------------------------------------- device and precision
def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; anything else is passed to ``torch.device``.

    A Slurm job may see ``CUDA_VISIBLE_DEVICES`` without a usable GPU: ``auto`` then falls back to CPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


def device_name(device: torch.device) -> str:
    """``cuda:<GPU model>`` or ``cpu:<processor>`` (logged with every stage run)."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}"


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


#: The ``precision`` values (``train.precision``, ``sample.precision``, ``manipulate.precision``).
PRECISIONS = ("auto", "fp32", "bf16")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``auto``/``fp32``/``bf16`` on ``device`` -> the autocast dtype (``None`` = plain fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
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
