"""ILVR conditioning: paint-to-image, harmonization, editing, super-resolution (SinDiffusion eq. 7).

Iterative Latent Variable Refinement (Choi et al. 2021) replaces the low frequencies of
each sample by those of a reference image diffused to the same noise level::

    x_{t_prev} <- phi_N(y_{t_prev}) + x_{t_prev} - phi_N(x_{t_prev}),   y_{t_prev} ~ q(y at t_prev)
                                                                       (SinDiffusion, eq. 7)

``phi_N`` (:class:`LowPass`) downsamples by ``N`` and upsamples back; ``y_{-1}`` is the
clean reference. Because ``phi_N`` is linear this is computed as ``x + phi_N(y - x)``.
Options used by the applications of the paper's section 4.4:

* ``t_start`` (SDEdit, Meng et al. 2022): start from the reference noised to ``t_start``
  instead of pure noise -- paint-to-image, harmonization, editing;
* ``stop_at``: condition only down to a timestep, then sample freely (more variation);
* ``mask`` (1 = region to change): outside the mask the sample is the noised reference at
  every step (as eq. 6) and the clean reference is pasted back at the end
  (:func:`composite`) -- harmonization and editing.

Images are ``[B, 3, H, W]`` in [-1, 1]; masks ``[1 or B, 1, H, W]`` in {0, 1}, 1 = change.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..diffusion import GaussianDiffusion, ModelOutput, Sampler, SamplingContext, SamplingHook
from ..diffusion.gaussian import EpsModel
from .known_region import noised_reference, paste_known, sample_like, validate_mask

__all__ = [
    "ILVRHook",
    "LowPass",
    "composite",
    "ilvr_sample",
    "ilvr_sdedit",
    "sdedit_timestep",
    "super_resolve",
]


class LowPass:
    """``phi_N``: downsample by ``N`` then upsample back to the input size (a low-pass filter).

    Down: bicubic with ``antialias=True`` (a proper prefilter, close to ILVR's Lanczos/cubic
    ``Resizer``); up: plain bicubic. Both are linear and differentiable.
    ``__call__``: ``[B, C, H, W] -> [B, C, H, W]``; ``N = 1`` is the identity.

    Args:
        factor: integer ``N >= 1``.
        min_size: smallest allowed side of the downsampled image, in pixels.
    """

    def __init__(self, factor: int, min_size: int = 4) -> None:
        if isinstance(factor, bool) or int(factor) != factor or factor < 1:
            raise ValueError(f"low-pass factor N must be an integer >= 1, got {factor!r}")
        self.factor = int(factor)
        self.min_size = int(min_size)

    def low_size(self, height: int, width: int) -> tuple[int, int]:
        """The downsampled ``(H / N, W / N)`` (rounded); raises ``ValueError`` if below ``min_size``."""
        h, w = round(height / self.factor), round(width / self.factor)
        if min(h, w) < self.min_size:
            raise ValueError(
                f"low-pass factor N={self.factor} is too large for a {height}x{width} image: "
                f"{height}/{self.factor} x {width}/{self.factor} gives {h}x{w} px, below the minimum of "
                f"{self.min_size} px; use N <= {min(height, width) // self.min_size}"
            )
        return h, w

    def check(self, height: int, width: int) -> None:
        """Validate that ``N`` suits an image of ``height x width`` (see :meth:`low_size`)."""
        self.low_size(height, width)

    def down(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H/N, W/N]`` (antialiased bicubic)."""
        if self.factor == 1:
            return x
        size = self.low_size(*x.shape[-2:])
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)

    def up(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``[B, C, h, w] -> [B, C, *size]`` (bicubic)."""
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return x
        return self.up(self.down(x), tuple(x.shape[-2:]))

    def __repr__(self) -> str:
        return f"LowPass(factor={self.factor})"


def composite(result: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Paste ``reference`` back outside ``mask``: ``result`` where mask = 1, ``reference`` where 0.

    Shapes: ``result [B, C, H, W]``, ``reference [1 or B, C, H, W]``, ``mask [1 or B, 1, H, W]``
    (1 = changed region). Exact (no blending arithmetic).
    """
    return paste_known(result, reference, validate_mask(mask, result))


def sdedit_timestep(sampler: Sampler, strength: float) -> int:
    """The visited step of ``sampler`` closest to ``strength * (T - 1)`` (SDEdit's starting noise level).

    ``strength`` in (0, 1]: 1 = start from (almost) pure noise, small = stay close to the reference.
    Pass the result both to :class:`ILVRHook` (``t_start``) and to ``sample_loop(t_start=...)``.
    """
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"SDEdit strength must be in (0, 1], got {strength!r}")
    target = strength * (sampler.diffusion.num_timesteps - 1)
    return min(sampler.timesteps, key=lambda t: (abs(t - target), -t))


class ILVRHook(SamplingHook):
    """Low-frequency conditioning on a reference image (eq. 7), with optional SDEdit start and mask.

    Args:
        reference: ``[1 or B, 3, H, W]`` in [-1, 1] (painting, naive composite, edited image,
            bicubic-upsampled low-res image ...).
        factor: the low-pass factor ``N`` of :class:`LowPass` (larger = only coarser structure kept).
        t_start: if given, :meth:`start` replaces the initial noise by ``q(reference at t_start)``
            (SDEdit). ``sample_loop`` must get the same ``t_start`` (see :func:`ilvr_sdedit`);
            if the loop starts above it a ``ValueError`` explains the mismatch.
        stop_at: condition the sample ``x_{t_prev}`` only while ``t_prev >= stop_at``: an int is a
            timestep, a float in [0, 1] a fraction of T. 0 (default) conditions every step,
            including the final clean image.
        mask: ``[1 or B, 1, H, W]`` {0, 1}, **1 = region allowed to change**. Outside it the sample
            is replaced by the same noised reference at every step, and :meth:`finish` pastes the
            clean reference back (:func:`composite`).
        weight: multiplies the correction ``phi_N(y - x)``; 1 is eq. (7).
    """

    def __init__(
        self,
        reference: torch.Tensor,
        factor: int,
        t_start: int | None = None,
        stop_at: int | float = 0,
        mask: torch.Tensor | None = None,
        weight: float = 1.0,
    ) -> None:
        if reference.dim() != 4:
            raise ValueError(f"reference must be [B, C, H, W], got shape {tuple(reference.shape)}")
        self.lowpass = LowPass(factor)
        self.lowpass.check(*reference.shape[-2:])
        if t_start is not None and t_start < 0:
            raise ValueError(f"t_start must be a timestep >= 0, got {t_start}")
        if isinstance(stop_at, float) and not 0.0 <= stop_at <= 1.0:
            raise ValueError(f"stop_at as a fraction must be in [0, 1], got {stop_at}")
        if not isinstance(stop_at, float) and stop_at < 0:
            raise ValueError(f"stop_at as a timestep must be >= 0, got {stop_at}")
        self.reference = reference.float()
        self.t_start = t_start
        self.stop_at = stop_at
        self.mask = None if mask is None else validate_mask(mask, reference)
        self.weight = float(weight)

    def stop_step(self, num_timesteps: int) -> int:
        """``stop_at`` as a timestep."""
        if isinstance(self.stop_at, float):
            return int(round(self.stop_at * num_timesteps))
        return int(self.stop_at)

    def start(self, x: torch.Tensor, t: int, ctx: SamplingContext) -> torch.Tensor:
        self.lowpass.check(*x.shape[-2:])
        if tuple(x.shape[-2:]) != tuple(self.reference.shape[-2:]):
            raise ValueError(
                f"sample size {tuple(x.shape[-2:])} differs from the reference size {tuple(self.reference.shape[-2:])}"
            )
        if self.t_start is None:
            if self.mask is not None:
                x = paste_known(x, noised_reference(self.reference, t, x, ctx), self.mask)
            return x
        if t > self.t_start:
            raise ValueError(
                f"ILVRHook(t_start={self.t_start}) but the sampling loop starts at t={t}: "
                f"pass t_start={self.t_start} to sample_loop (see ilvr_sdedit)"
            )
        # SDEdit: x_{t_start} ~ q(reference at t_start) (t may be the visited step just below t_start).
        return noised_reference(self.reference, t, x, ctx)

    def after_step(self, x_prev: torch.Tensor, t_prev: int, out: ModelOutput, ctx: SamplingContext) -> torch.Tensor:
        if max(t_prev, 0) < self.stop_step(ctx.diffusion.num_timesteps):
            if self.mask is None:
                return x_prev
            y = noised_reference(self.reference, t_prev, x_prev, ctx)
            return paste_known(x_prev, y, self.mask)
        y = noised_reference(self.reference, t_prev, x_prev, ctx)
        # Eq. (7): phi_N(y) + x - phi_N(x) = x + phi_N(y - x)  (phi_N is linear).
        x_prev = x_prev + self.weight * self.lowpass(y - x_prev)
        if self.mask is not None:
            x_prev = paste_known(x_prev, y, self.mask)
        return x_prev

    def finish(self, x0: torch.Tensor, ctx: SamplingContext) -> torch.Tensor:
        if self.mask is None:
            return x0
        return composite(x0, self.reference, self.mask)


def ilvr_sdedit(
    reference: torch.Tensor,
    factor: int,
    sampler: Sampler,
    strength: float | None,
    *,
    stop_at: int | float = 0,
    mask: torch.Tensor | None = None,
    weight: float = 1.0,
) -> tuple[ILVRHook, int | None]:
    """Build an :class:`ILVRHook` whose SDEdit start matches the sampler's grid.

    Returns ``(hook, t_start)``; call ``sample_loop(..., hooks=[hook], t_start=t_start)``.
    ``strength=None`` means no SDEdit (start from pure noise, ``t_start`` is ``None``).
    """
    t_start = None if strength is None else sdedit_timestep(sampler, strength)
    return ILVRHook(reference, factor, t_start=t_start, stop_at=stop_at, mask=mask, weight=weight), t_start


def ilvr_sample(
    model: EpsModel,
    diffusion: GaussianDiffusion,
    sampler: Sampler,
    reference: torch.Tensor,
    factor: int,
    *,
    strength: float | None = None,
    mask: torch.Tensor | None = None,
    stop_at: int | float = 0,
    batch_size: int | None = None,
    weight: float = 1.0,
    extra_hooks: Sequence[SamplingHook] = (),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """ILVR sampling (eq. 7) towards ``reference`` ``[1 or B, 3, H, W]`` in [-1, 1] -> ``[B, 3, H, W]``.

    Paint-to-image: ``strength`` 0.6-0.8, ``factor`` 4-8. Harmonization / editing: also a ``mask``
    (1 = the pasted object / edited region; the rest is returned unchanged), a small ``factor``
    keeps shape and colours. ``strength=None``: start from pure noise (no SDEdit).
    """
    reference = reference.to(device)
    hook, t_start = ilvr_sdedit(
        reference,
        factor,
        sampler,
        strength,
        stop_at=stop_at,
        mask=None if mask is None else mask.to(device),
        weight=weight,
    )
    loop = {"generator": generator, "device": device, "progress": progress, "t_start": t_start}
    return sample_like(model, diffusion, sampler, reference, batch_size, [hook, *extra_hooks], **loop)


def super_resolve(
    model: EpsModel,
    diffusion: GaussianDiffusion,
    sampler: Sampler,
    low_res: torch.Tensor,
    scale: int,
    *,
    stop_at: int | float = 0,
    batch_size: int | None = None,
    extra_hooks: Sequence[SamplingHook] = (),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Super-resolution by ILVR: ``[1 or B, 3, h, w]`` -> ``[B, 3, scale*h, scale*w]``, both in [-1, 1].

    The reference is ``low_res`` bicubic-upsampled by ``scale``; ILVR with ``N = scale`` makes the
    result's ``scale``-fold downsampling match the input while the model adds the detail.
    Full-length sampling from pure noise (no SDEdit).
    """
    if isinstance(scale, bool) or int(scale) != scale or scale < 2:
        raise ValueError(f"super-resolution scale must be an integer >= 2, got {scale!r}")
    if low_res.dim() != 4:
        raise ValueError(f"low_res must be [B, C, h, w], got shape {tuple(low_res.shape)}")
    scale = int(scale)
    h, w = low_res.shape[-2:]
    reference = F.interpolate(low_res.float(), size=(scale * h, scale * w), mode="bicubic", align_corners=False).clamp(
        -1.0, 1.0
    )
    return ilvr_sample(
        model,
        diffusion,
        sampler,
        reference,
        scale,
        batch_size=batch_size,
        stop_at=stop_at,
        extra_hooks=extra_hooks,
        generator=generator,
        device=device,
        progress=progress,
    )
