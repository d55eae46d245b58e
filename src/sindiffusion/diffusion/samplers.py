"""Samplers: given the model's output at step t, produce x at the previous step.

A sampler never calls the network (diffusers' scheduler convention): the sampling loop
(:mod:`sindiffusion.diffusion.loop`) runs the model, lets hooks edit the output, and
calls :meth:`Sampler.step`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ..registry import Registry
from .gaussian import GaussianDiffusion, ModelOutput


def spaced_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` integer timesteps evenly spread over [0, T-1], descending, always ending at 0."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"sampling steps must be in [1, {num_timesteps}], got {steps}")
    if steps == num_timesteps:
        return list(range(num_timesteps - 1, -1, -1))
    grid = torch.linspace(0, num_timesteps - 1, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(int(v) for v in grid), reverse=True)


class Sampler(ABC):
    """Turns :class:`ModelOutput` at step ``t`` into ``x_{t_prev}``.

    Attributes:
        timesteps: the descending steps visited, e.g. ``[999, 998, ..., 0]``.
    """

    name: str = "sampler"

    def __init__(self, diffusion: GaussianDiffusion, steps: int) -> None:
        self.diffusion = diffusion
        self.timesteps = spaced_timesteps(diffusion.num_timesteps, steps)

    def visited(self, t_start: int | None = None) -> list[int]:
        """The steps a loop starting at ``t_start`` (None = T-1) runs: :attr:`timesteps` <= ``t_start``."""
        return [t for t in self.timesteps if t_start is None or t <= t_start]

    def prev_timestep(self, t: int) -> int:
        """The step after ``t`` in :attr:`timesteps`, or -1 after the last one."""
        i = self.timesteps.index(t)
        return self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1

    @abstractmethod
    def step(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> torch.Tensor:
        """One reverse step. ``noise`` is a standard normal tensor shaped like ``x_t``."""

    @abstractmethod
    def guide(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, grad: torch.Tensor) -> ModelOutput:
        """Shift the output by a guidance gradient ``grad = d log p(y | x_t) / d x_t``."""


#: Sampler name -> class; ``params.yaml``'s ``sample.sampler`` / ``manipulate.sampler`` choose from it.
SAMPLERS: Registry[type[Sampler]] = Registry("sampler")


@SAMPLERS.register("ddpm")
class DDPMSampler(Sampler):
    """Ancestral sampling (Ho et al. eq. 11): x_{t-1} = mu + sigma z, z = 0 at the last step.

    With fewer steps than T it samples the respaced chain of improved-diffusion.
    """

    name = "ddpm"

    def step(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> torch.Tensor:
        if t_prev < 0:
            return out.mean
        return out.mean + out.variance.sqrt() * noise

    def guide(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, grad: torch.Tensor) -> ModelOutput:
        # Dhariwal & Nichol, Algorithm 1 / SinDiffusion eq. (5): mu + s * Sigma * grad (s folded into grad).
        return out.replace(mean=out.mean + out.variance * grad)


@SAMPLERS.register("ddim")
class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021, eq. 12) with stochasticity ``eta`` (0 = deterministic)."""

    name = "ddim"

    def __init__(self, diffusion: GaussianDiffusion, steps: int, eta: float = 0.0) -> None:
        super().__init__(diffusion, steps)
        if eta < 0:
            raise ValueError(f"DDIM eta must be >= 0, got {eta}")
        self.eta = eta

    def step(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> torch.Tensor:
        abar_t, abar_s = self.diffusion.abar(t), self.diffusion.abar(t_prev)
        sigma = self.eta * ((1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)) ** 0.5
        direction = max(1 - abar_s - sigma ** 2, 0.0) ** 0.5 * out.eps
        x_prev = abar_s ** 0.5 * out.pred_x0 + direction
        if t_prev >= 0 and sigma > 0:
            x_prev = x_prev + sigma * noise
        return x_prev

    def guide(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, grad: torch.Tensor) -> ModelOutput:
        # Dhariwal & Nichol, Algorithm 2: eps <- eps - sqrt(1 - abar_t) * grad, then re-derive x0.
        abar_t = self.diffusion.abar(t)
        eps = out.eps - (1 - abar_t) ** 0.5 * grad
        pred_x0 = (x_t - (1 - abar_t) ** 0.5 * eps) / abar_t ** 0.5
        return out.replace(eps=eps, pred_x0=pred_x0)


def make_sampler(name: str, diffusion: GaussianDiffusion, steps: int, eta: float = 0.0) -> Sampler:
    """The registered sampler ``name``; a clear ``ValueError`` naming the choices otherwise."""
    if name not in SAMPLERS:
        raise ValueError(SAMPLERS.unknown(name))
    cls = SAMPLERS.get(name)
    return cls(diffusion, steps, eta) if cls is DDIMSampler else cls(diffusion, steps)
