"""Euler-ancestral sampling (Karras et al. 2022 / k-diffusion's ``sample_euler_ancestral``) on the
discrete DDPM steps.

In the variance-exploding view x~ = x_t / sqrt(abar_t) = x0 + sigma_t eps with
sigma_t = sqrt((1 - abar_t) / abar_t), one step from sigma to sigma' splits sigma' into a
deterministic part sigma_down and fresh noise sigma_up (sigma_down^2 + sigma_up^2 = sigma'^2;
``eta`` scales sigma_up, 0 = the plain Euler/DDIM ODE step), moves x~ along the denoising direction
d = (x~ - x0) / sigma to sigma_down, adds sigma_up z and maps back with sqrt(abar_{t'}).
"""

from __future__ import annotations

import torch

from ..gaussian import GaussianDiffusion, ModelOutput
from . import SAMPLERS, Sampler, StepOutput


@SAMPLERS.register("euler_ancestral")
class EulerAncestralSampler(Sampler):
    """Euler-ancestral with noise scale ``eta`` (1 = k-diffusion's default; 0 = deterministic Euler)."""

    name = "euler_ancestral"
    options = ("eta",)

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = None, eta: float = 1.0) -> None:
        super().__init__(diffusion, steps)
        if eta < 0:
            raise ValueError(f"Euler-ancestral eta must be >= 0, got {eta}")
        self.eta = eta

    def sigma(self, t: int) -> float:
        """sqrt((1 - abar_t) / abar_t); 0 at t = -1 (the clean image)."""
        abar = self.diffusion.abar(t)
        return ((1 - abar) / abar) ** 0.5

    def step(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> StepOutput:
        sigma, sigma_next = self.sigma(t), self.sigma(t_prev)
        sigma_up = min(sigma_next, self.eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
        sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
        x = x_t / self.diffusion.abar(t) ** 0.5
        d = (x - out.pred_x0) / sigma
        x = x + d * (sigma_down - sigma)
        if sigma_up > 0:
            x = x + sigma_up * noise
        return StepOutput(x * self.diffusion.abar(t_prev) ** 0.5, out.pred_x0)
