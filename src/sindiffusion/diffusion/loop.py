"""THE sampling loop. Every application (random samples, text guidance, outpainting,
ILVR, super-resolution ...) is this loop plus :class:`SamplingHook` objects.

Order of operations at each visited step ``t`` (``t_prev`` is the next step, -1 = done)::

    x = hook.start(x_T, t_first)                      # once: e.g. SDEdit noising of a reference
    for t in timesteps:
        repeat 1 + max(hook.resample_count(t)) times:  # RePaint resampling (default once)
            out  = diffusion.p_output(model, x, t, t_prev)
            grad = sum(hook.guidance(x, t, out))       # e.g. CLIP gradient
            out  = sampler.guide(out, x, t, t_prev, grad)
            x'   = sampler.step(out, x, t, t_prev, z).prev_sample
            x'   = hook.after_step(x', t_prev, out)    # e.g. known-region replacement, ILVR
            if another repeat: x = q(x_t | x_{t_prev} = x')
        x = x'
    x0 = hook.finish(x)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .gaussian import EpsModel, GaussianDiffusion, ModelOutput
from .samplers import Sampler
from .x0 import X0ClipLike


@dataclass
class SamplingContext:
    """What hooks may use: the process, the sampler, the seeded noise source."""

    diffusion: GaussianDiffusion
    sampler: Sampler
    generator: torch.Generator
    device: torch.device
    shape: tuple[int, ...]
    #: one generator per sample of the batch (else all noise comes from ``generator``)
    per_sample: Sequence[torch.Generator] = ()

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise from the loop's generator (drawn on CPU: same numbers on any device).

        With :attr:`per_sample` generators, sample ``b`` of ``x`` (``[B, ...]``) gets its noise from
        generator ``b``, so a sample does not depend on the batch it is drawn in.
        """
        if self.per_sample and x.shape[0] == len(self.per_sample):
            noise = torch.stack([torch.randn(x.shape[1:], generator=g, dtype=torch.float32) for g in self.per_sample])
        else:
            noise = torch.randn(x.shape, generator=self.generator, dtype=torch.float32)
        return noise.to(device=x.device, dtype=x.dtype)


class SamplingHook:
    """Base class: every method is a no-op; override the ones an application needs.

    All tensors are ``[B, C, H, W]`` in the diffusion's space (images in [-1, 1]).
    """

    #: set True if :meth:`guidance` needs gradients through the model's output.
    needs_grad: bool = False

    def start(self, x: torch.Tensor, t: int, ctx: SamplingContext) -> torch.Tensor:
        """Edit the starting point ``x`` (pure noise at step ``t``)."""
        return x

    def guidance(self, x_t: torch.Tensor, t: int, out: ModelOutput, ctx: SamplingContext) -> torch.Tensor | None:
        """Return d log p(y | x_t) / d x_t (already multiplied by the guidance scale), or None."""
        return None

    def after_step(self, x_prev: torch.Tensor, t_prev: int, out: ModelOutput, ctx: SamplingContext) -> torch.Tensor:
        """Edit the new sample ``x_{t_prev}`` (``t_prev = -1``: the final clean image)."""
        return x_prev

    def resample_count(self, t: int) -> int:
        """How many extra times to redo step ``t`` (RePaint's resampling); 0 by default."""
        return 0

    def finish(self, x0: torch.Tensor, ctx: SamplingContext) -> torch.Tensor:
        """Edit the final image."""
        return x0


def sample_loop(
    model: EpsModel,
    diffusion: GaussianDiffusion,
    sampler: Sampler,
    shape: Sequence[int],
    *,
    hooks: Sequence[SamplingHook] = (),
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    device: torch.device | str = "cpu",
    t_start: int | None = None,
    clip_x0: X0ClipLike = True,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Draw samples of ``shape = (B, C, H, W)``; returns a tensor in [-1, 1].

    Args:
        t_start: begin at this step instead of T-1 (only visited steps <= t_start are run);
            hooks' :meth:`SamplingHook.start` typically noises a reference image to it (SDEdit).
        generator: CPU generator for all noise, so results do not depend on the device; or one
            per sample (``B`` of them: each sample's noise comes from its own generator).
        clip_x0: what each step does to the predicted x0 (``True`` = clamp, ``False`` = nothing,
            or an :class:`~sindiffusion.diffusion.x0.X0Clip`).
        progress: called as ``progress(i, n)`` after each visited step.
    """
    device = torch.device(device)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    per_sample = tuple(generator) if not isinstance(generator, torch.Generator) else ()
    timesteps = sampler.visited(t_start)
    if not timesteps:
        raise ValueError(f"t_start={t_start} leaves no sampling steps")
    ctx = SamplingContext(
        diffusion, sampler, per_sample[0] if per_sample else generator, device, tuple(shape), per_sample=per_sample
    )
    x = ctx.randn_like(torch.empty(tuple(shape), device=device))
    for hook in hooks:
        x = hook.start(x, timesteps[0], ctx)
    needs_grad = any(h.needs_grad for h in hooks)

    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        repeats = 1 + max((h.resample_count(t) for h in hooks), default=0)
        for r in range(repeats):
            with torch.enable_grad() if needs_grad else torch.no_grad():
                x_in = x.detach().requires_grad_(needs_grad)
                out = diffusion.p_output(model, x_in, t, t_prev, clip_x0=clip_x0)
                grads = [g for g in (h.guidance(x_in, t, out, ctx) for h in hooks) if g is not None]
            out = ModelOutput(**{k: v.detach() for k, v in vars(out).items()})
            if grads:
                out = sampler.guide(out, x, t, t_prev, torch.stack(grads).sum(0).detach())
            with torch.no_grad():
                x_prev = sampler.step(out, x, t, t_prev, ctx.randn_like(x)).prev_sample
                for hook in hooks:
                    x_prev = hook.after_step(x_prev, t_prev, out, ctx)
                if r + 1 < repeats:
                    # RePaint: go back up to step t and denoise again.
                    x = diffusion.q_sample_from(x_prev, t_prev, t, ctx.randn_like(x))
        x = x_prev
        if progress is not None:
            progress(i + 1, len(timesteps))
    for hook in hooks:
        x = hook.finish(x, ctx)
    return x.clamp(-1.0, 1.0)
