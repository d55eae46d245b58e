"""Noise schedules: beta_t for t = 0 .. T-1 (float64, shape ``[T]``)."""

from __future__ import annotations

import math
from typing import Callable

import torch


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule (Ho et al. 2020), as the official SinDiffusion code uses.

    ``beta_start``/``beta_end`` are given for T = 1000 and are rescaled for other
    T so that the total amount of noise stays comparable (improved-diffusion convention).
    """
    scale = 1000.0 / num_timesteps
    return torch.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos^2((t/T + s)/(1 + s) * pi/2)."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
        for i in range(num_timesteps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


#: Schedule name -> ``fn(T, beta_start, beta_end)``; ``diffusion.schedule`` chooses from it (cosine ignores the betas).
SCHEDULES: dict[str, Callable[[int, float, float], torch.Tensor]] = {
    "linear": linear_betas,
    "cosine": lambda num_timesteps, beta_start, beta_end: cosine_betas(num_timesteps),
}


def make_betas(schedule: str, num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Build the named schedule (:data:`SCHEDULES`); raises ``ValueError`` naming the allowed values."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {schedule!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[schedule](num_timesteps, beta_start, beta_end)


def step_of_fraction(fraction: float, num_timesteps: int) -> int:
    """The timestep at ``fraction`` of the process: ``round(fraction * (T - 1))``, in [0, T-1].

    The one rounding of every "fraction of the timesteps" setting (``sample.init_t``, ``train.t_max``),
    so that a model trained up to ``t_max`` and a sampler started at ``init_t = t_max`` meet on the
    same step (0.5 of 1000 -> 500).
    """
    return min(num_timesteps - 1, max(0, int(round(fraction * (num_timesteps - 1)))))
