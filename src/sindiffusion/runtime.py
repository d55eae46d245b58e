"""How the process runs: on which device, in which precision, and how it stops on a signal.

* Device and precision (``train.device``/``train.precision``, ``sample.*``, ...): :func:`resolve_device`,
  :func:`autocast_dtype`, :func:`describe`. ``auto`` precision picks bf16 autocast where the hardware
  computes bf16 natively -- every CUDA GPU we target, and CPUs with the ``avx512_bf16`` or ``amx_bf16``
  instructions (measured on such a CPU: 1.8x faster training iterations, 2-3x faster denoising steps
  than fp32) -- and fp32 elsewhere (CPUs without native bf16 emulate it and are slower than fp32).
* Signals: Stopping long work cleanly on a signal (Slurm preemption and time limits, ``kill``, Ctrl-C).

Slurm sends SIGTERM to every process of a job when it preempts it or reaches its time limit
(then SIGKILL after ``KillWait``, 30 s by default); ``sbatch --signal=USR1@120`` sends SIGUSR1
earlier. :class:`StopSignals` turns SIGTERM, SIGUSR1 and SIGINT into a flag that a training
loop checks after each step: it then writes its resume checkpoint and raises
:class:`Preempted`, which the command line turns into exit status :data:`EXIT_RESUMABLE`
(SIGTERM, SIGUSR1) or 130 (Ctrl-C). Running the same command again resumes with no step lost.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, ContextManager

import torch

#: Signals that ask for a clean stop.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

#: Exit status after a clean stop on SIGTERM/SIGUSR1: EX_TEMPFAIL ("try again"); a cluster can
#: requeue it automatically (slurm.conf ``RequeueExit=75``). Ctrl-C exits with the usual 130.
EXIT_RESUMABLE = 75


class Preempted(Exception):
    """Work stopped cleanly by a signal after writing its resume state.

    ``signum``: the signal; ``step``: the last finished step; ``checkpoint``: where the resume
    state was written (``None`` if nothing could be saved).
    """

    def __init__(self, signum: int, step: int, checkpoint: str | None = None) -> None:
        super().__init__(signum, step, checkpoint)
        self.signum, self.step, self.checkpoint = int(signum), int(step), checkpoint

    def __str__(self) -> str:
        where = f"resume checkpoint {self.checkpoint} written" if self.checkpoint else "no resume checkpoint written"
        return (
            f"stopped by {signal.Signals(self.signum).name} after step {self.step}; {where}; "
            "run the same command again to resume"
        )

    @property
    def exit_status(self) -> int:
        return 130 if self.signum == signal.SIGINT else EXIT_RESUMABLE


class StopSignals:
    """Context manager: while active, SIGTERM/SIGUSR1/SIGINT set :attr:`signum` instead of killing.

    A second SIGINT (Ctrl-C twice) raises :class:`KeyboardInterrupt` at once. Outside the main
    thread (where Python cannot install handlers) it does nothing. The previous handlers are
    restored on exit.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            print(
                f"received {signal.Signals(signum).name}: finishing the current step, then saving the resume "
                "checkpoint",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


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
