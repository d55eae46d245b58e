"""Ancestral DDPM sampling (Ho et al. 2020)."""

from __future__ import annotations

import torch

from ..gaussian import ModelOutput
from . import SAMPLERS, Sampler, StepOutput


@SAMPLERS.register("ddpm")
class DDPMSampler(Sampler):
    """Ancestral sampling (Ho et al. eq. 11): x_{t-1} = mu + sigma z, z = 0 at the last step.

    With fewer steps than T it samples the respaced chain of improved-diffusion.
    """

    name = "ddpm"

    def step(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> StepOutput:
        if t_prev < 0:
            return StepOutput(out.mean, out.pred_x0)
        return StepOutput(out.mean + out.variance.sqrt() * noise, out.pred_x0)

    def guide(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, grad: torch.Tensor) -> ModelOutput:
        # Dhariwal & Nichol, Algorithm 1 / SinDiffusion eq. (5): mu + s * Sigma * grad (s folded into grad).
        return out.replace(mean=out.mean + out.variance * grad)
