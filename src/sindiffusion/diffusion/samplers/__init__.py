"""Samplers: given the model's output at step t, produce x at the previous step.

A sampler never calls the network (diffusers' scheduler convention): the sampling loop
(:mod:`sindiffusion.diffusion.loop`) runs the model, lets hooks edit the output, and calls
:meth:`Sampler.step`, which returns a :class:`StepOutput`. A sampler is built once per run
(:func:`build_sampler`) and told its steps with :meth:`Sampler.set_timesteps`.

Every sampler is one module of this package that registers its class in :data:`SAMPLERS`; the
config's allowed ``sampler`` values, the JSON schema and the ``--sampler`` choices come from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ...registry import Registry, import_submodules
from ..gaussian import GaussianDiffusion, ModelOutput

#: Sampler name -> class; ``params.yaml``'s ``sample.sampler`` / ``manipulate.sampler`` choose from it.
SAMPLERS: Registry[type["Sampler"]] = Registry("sampler", load=lambda: import_submodules(__name__))


def spaced_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` integer timesteps evenly spread over [0, T-1], descending, always ending at 0."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"sampling steps must be in [1, {num_timesteps}], got {steps}")
    if steps == num_timesteps:
        return list(range(num_timesteps - 1, -1, -1))
    grid = torch.linspace(0, num_timesteps - 1, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(int(v) for v in grid), reverse=True)


@dataclass
class StepOutput:
    """One reverse step's result, ``[B, C, H, W]``: the sample at ``t_prev`` and the x0 it used."""

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor


class Sampler:
    """Turns :class:`ModelOutput` at step ``t`` into ``x_{t_prev}``.

    Subclasses implement :meth:`step` and list the sampling settings they read in ``options``
    (e.g. ``("eta",)``: :func:`build_sampler` passes ``settings.eta`` as a keyword argument).

    Attributes:
        timesteps: the descending steps visited, e.g. ``[999, 998, ..., 0]`` (set by :meth:`set_timesteps`).
    """

    name: ClassVar[str] = "sampler"
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, diffusion: GaussianDiffusion, steps: int | None = None) -> None:
        self.diffusion = diffusion
        self.timesteps: list[int] = []
        if steps is not None:
            self.set_timesteps(steps)

    def set_timesteps(self, steps: int) -> None:
        """Visit ``steps`` evenly spaced steps (``ValueError`` outside [1, T])."""
        self.timesteps = spaced_timesteps(self.diffusion.num_timesteps, steps)

    def visited(self, t_start: int | None = None) -> list[int]:
        """The steps a loop starting at ``t_start`` (None = T-1) runs: :attr:`timesteps` <= ``t_start``."""
        return [t for t in self.timesteps if t_start is None or t <= t_start]

    def prev_timestep(self, t: int) -> int:
        """The step after ``t`` in :attr:`timesteps`, or -1 after the last one."""
        i = self.timesteps.index(t)
        return self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1

    def step(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, noise: torch.Tensor) -> StepOutput:
        """One reverse step. ``noise`` is a standard normal tensor shaped like ``x_t``."""
        raise NotImplementedError

    def guide(self, out: ModelOutput, x_t: torch.Tensor, t: int, t_prev: int, grad: torch.Tensor) -> ModelOutput:
        """Shift the output by a guidance gradient ``grad = d log p(y | x_t) / d x_t``.

        Default (samplers that step along eps, Dhariwal & Nichol Algorithm 2):
        eps <- eps - sqrt(1 - abar_t) * grad, then re-derive x0.
        """
        abar_t = self.diffusion.abar(t)
        eps = out.eps - (1 - abar_t) ** 0.5 * grad
        pred_x0 = (x_t - (1 - abar_t) ** 0.5 * eps) / abar_t**0.5
        return out.replace(eps=eps, pred_x0=pred_x0)


def build_sampler(settings: Any, diffusion: GaussianDiffusion) -> Sampler:
    """The sampler ``settings.sampler`` with its options read from ``settings`` (a
    :class:`~sindiffusion.config.SamplingSettings` or any object with those attributes), its
    timesteps set to ``settings.steps``. ``ValueError`` for an unknown name or too many steps."""
    if settings.sampler not in SAMPLERS:
        raise ValueError(SAMPLERS.unknown(settings.sampler))
    cls = SAMPLERS.get(settings.sampler)
    sampler = cls(diffusion, **{k: getattr(settings, k) for k in cls.options})
    sampler.set_timesteps(settings.steps)
    return sampler


@dataclass(frozen=True)
class _Settings:
    sampler: str
    steps: int
    eta: float = 0.0


def make_sampler(name: str, diffusion: GaussianDiffusion, steps: int, eta: float = 0.0) -> Sampler:
    """Shortcut of :func:`build_sampler` for code and tests that hold loose values."""
    return build_sampler(_Settings(name, steps, eta), diffusion)
