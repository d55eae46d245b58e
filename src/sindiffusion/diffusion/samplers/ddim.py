"""DDIM (Song et al. 2021)."""

from __future__ import annotations

import torch

from ..gaussian import GaussianDiffusion, ModelOutput
from . import SAMPLERS, Sampler, StepOutput


@SAMPLERS.register("ddim")
class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021, eq. 12) with stochasticity ``eta`` (0 = deterministic)."""

    name = "ddim"
    options = ("eta",)

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = None, eta: float = 0.0) -> None:
        super().__init__(diffusion, steps)
        if eta < 0:
            raise ValueError(f"DDIM eta must be >= 0, got {eta}")
        self.eta = eta

    def step(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> StepOutput:
        abar_t, abar_s = self.diffusion.abar(t), self.diffusion.abar(t_prev)
        sigma = self.eta * ((1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)) ** 0.5
        direction = max(1 - abar_s - sigma**2, 0.0) ** 0.5 * out.eps
        x_prev = abar_s**0.5 * out.pred_x0 + direction
        if t_prev >= 0 and sigma > 0:
            x_prev = x_prev + sigma * noise
        return StepOutput(x_prev, out.pred_x0)
