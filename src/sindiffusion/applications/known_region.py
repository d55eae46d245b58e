"""Outpainting and inpainting: keep a known region, generate the rest (SinDiffusion eq. 6).

After every reverse step the sample is re-assembled from the generated part and the
known image diffused to the same noise level::

    x_{t_prev} <- x_gen * m + q(x_known at t_prev) * (1 - m)          (SinDiffusion, eq. 6)

with ``q(x_known at t_prev) = sqrt(abar) x_known + sqrt(1 - abar) z`` and, at the very
end (``t_prev = -1``), the clean known image itself, so the known region of the result
equals the input *exactly*. Optional RePaint-style resampling (Lugmayr et al. 2022)
redoes each step ``resample`` extra times to harmonise the two regions; the sampling
loop does the re-noising (:meth:`GaussianDiffusion.q_sample_from`).

Conventions used throughout :mod:`sindiffusion.applications`:

* images are float tensors ``[B, 3, H, W]`` with values in [-1, 1];
* masks are float tensors ``[1 or B, 1, H, W]`` with values in {0, 1} where
  **1 = region to generate** and 0 = region that is known (kept from the input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..data.io import open_image, to_rgb
from ..diffusion import GaussianDiffusion, ModelOutput, Sampler, SamplingContext, SamplingHook, sample_loop
from ..diffusion.gaussian import EpsModel

__all__ = [
    "ANCHORS",
    "KnownRegionHook",
    "fill_masked_region",
    "load_mask",
    "mask_from_image",
    "noised_reference",
    "outpaint_canvas",
    "outpaint_to_size",
    "paste_known",
    "validate_mask",
]

#: Where :func:`outpaint_to_size` may place the original image on the larger canvas.
ANCHORS = ("center", "top", "bottom", "left", "right", "top-left", "top-right", "bottom-left", "bottom-right")


# ---------------------------------------------------------------------------- validation
def validate_mask(mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Check a generation mask against the image it belongs to; return it as float {0, 1}.

    Args:
        mask: ``[1 or B, 1, H, W]`` (a ``[H, W]`` or ``[1, H, W]`` tensor is accepted and
            reshaped); values in {0, 1}, **1 = generate**, 0 = keep the image.
        image: ``[B, C, H, W]`` in [-1, 1].

    Returns:
        The mask as ``[1 or B, 1, H, W]`` float tensor on ``image``'s device.

    Raises:
        ValueError: wrong rank/channels, spatial size or batch mismatch, values outside
            {0, 1}, an empty mask (nothing to generate) or an all-ones mask (nothing known).
    """
    if image.dim() != 4:
        raise ValueError(f"image must be [B, C, H, W], got shape {tuple(image.shape)}")
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[None]
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be [1 or B, 1, H, W] (one channel), got shape {tuple(mask.shape)}")
    if tuple(mask.shape[-2:]) != tuple(image.shape[-2:]):
        raise ValueError(
            f"mask size {tuple(mask.shape[-2:])} (H, W) does not match image size {tuple(image.shape[-2:])}; "
            "resize the mask to the image first"
        )
    if mask.shape[0] not in (1, image.shape[0]):
        raise ValueError(f"mask batch {mask.shape[0]} must be 1 or the image batch {image.shape[0]}")
    mask = mask.to(device=image.device, dtype=torch.float32)
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask values must be 0 (keep) or 1 (generate); threshold a soft mask first (mask > 0.5)")
    per_item = mask.flatten(1).sum(1)
    if bool((per_item == 0).any()):
        raise ValueError("mask is empty (all zeros): there is nothing to generate (1 = region to generate)")
    if bool((per_item == mask[0].numel()).any()):
        raise ValueError(
            "mask is all ones: nothing of the image is known, so there is nothing to condition on "
            "(1 = region to generate, 0 = region kept); use plain sampling instead"
        )
    return mask


def load_mask(path: str | Path, size: tuple[int, int] | None = None, invert: bool = False) -> torch.Tensor:
    """Read a mask image (white = generate) into a ``[1, 1, H, W]`` float {0, 1} tensor.

    Args:
        path: any image Pillow reads; it passes the checks of every input image
            (:func:`~sindiffusion.data.io.open_image`: :class:`~sindiffusion.data.io.ImageError` naming
            the file for a truncated, corrupt or oversized one); converted to grey and thresholded at 50 %.
        size: optional ``(H, W)``; the mask is resized with nearest-neighbour first.
        invert: treat black as the region to generate instead.
    """

    return mask_from_image(open_image(path), size, invert)


def mask_from_image(img: Any, size: tuple[int, int] | None = None, invert: bool = False) -> torch.Tensor:
    """:func:`load_mask` of an opened PIL image."""

    # 16-bit, 32-bit and float masks are scaled by their range first, as images are
    grey = (to_rgb(img) if img.mode in ("I;16", "I;16B", "I;16L", "I", "F") else img).convert("L")
    if size is not None:
        grey = grey.resize((int(size[1]), int(size[0])), Image.NEAREST)
    arr = np.asarray(grey, dtype=np.float32) / 255.0
    mask = torch.from_numpy((arr > 0.5).astype(np.float32))[None, None]
    return 1.0 - mask if invert else mask


# ---------------------------------------------------------------------------- canvases
def outpaint_canvas(
    image: torch.Tensor, left: int = 0, right: int = 0, top: int = 0, bottom: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put ``image`` on a larger canvas to be extended by ``left/right/top/bottom`` pixels.

    Args:
        image: ``[B, C, H, W]`` in [-1, 1].

    Returns:
        ``(canvas, mask)``: ``canvas`` is ``[B, C, H + top + bottom, W + left + right]`` with the
        image in place and 0 (mid-grey; the value is irrelevant) in the new border; ``mask`` is
        ``[1, 1, H', W']`` float with **1 on the border to generate** and 0 on the image.
    """
    pads = {"left": left, "right": right, "top": top, "bottom": bottom}
    for name, value in pads.items():
        if int(value) != value or value < 0:
            raise ValueError(f"outpainting {name} must be a non-negative integer, got {value!r}")
    if not any(pads.values()):
        raise ValueError("outpainting needs at least one of left/right/top/bottom > 0")
    if image.dim() != 4:
        raise ValueError(f"image must be [B, C, H, W], got shape {tuple(image.shape)}")
    b, c, h, w = image.shape
    H, W = h + top + bottom, w + left + right
    canvas = image.new_zeros((b, c, H, W))
    canvas[:, :, top : top + h, left : left + w] = image
    mask = image.new_ones((1, 1, H, W), dtype=torch.float32)
    mask[:, :, top : top + h, left : left + w] = 0.0
    return canvas, mask


def outpaint_to_size(
    image: torch.Tensor, height: int, width: int, anchor: str = "center"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Canvas of ``height x width`` with ``image`` placed at ``anchor`` (see :data:`ANCHORS`).

    ``"center"`` splits the extra pixels evenly (the odd one goes to the bottom/right),
    ``"left"`` keeps the image on the left edge (so the scene grows to the right), etc.
    Returns ``(canvas [B, C, height, width], mask [1, 1, height, width])`` as
    :func:`outpaint_canvas` (mask 1 = generate).
    """
    if anchor not in ANCHORS:
        raise ValueError(f"unknown anchor {anchor!r}; choose one of {', '.join(ANCHORS)}")
    h, w = image.shape[-2:]
    if height < h or width < w:
        raise ValueError(f"target size {height}x{width} is smaller than the image {h}x{w}; outpainting only grows")
    extra_h, extra_w = height - h, width - w
    parts = anchor.split("-")
    top = 0 if "top" in parts else extra_h if "bottom" in parts else extra_h // 2
    left = 0 if "left" in parts else extra_w if "right" in parts else extra_w // 2
    return outpaint_canvas(image, left=left, right=extra_w - left, top=top, bottom=extra_h - top)


# ---------------------------------------------------------------------------- the hook
def noised_reference(reference: torch.Tensor, t: int, like: torch.Tensor, ctx: SamplingContext) -> torch.Tensor:
    """``q(reference at t)`` broadcast to ``like``'s shape ``[B, C, H, W]``; the clean image at ``t = -1``.

    Noise comes from ``ctx.randn_like`` (the loop's seeded generator).
    """
    if reference.shape[0] not in (1, like.shape[0]) or tuple(reference.shape[1:]) != tuple(like.shape[1:]):
        raise ValueError(
            f"reference image {tuple(reference.shape)} does not fit the samples {tuple(like.shape)}: "
            "it needs the same [C, H, W] and a batch of 1 or the sample batch"
        )
    ref = reference.to(device=like.device, dtype=like.dtype).expand_as(like)
    if t < 0:
        return ref.clone()
    abar = ctx.diffusion.abar(t)
    return abar**0.5 * ref + (1.0 - abar) ** 0.5 * ctx.randn_like(like)


def paste_known(x: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` where ``mask == 1`` (generate), ``known`` where ``mask == 0``; exact, no arithmetic.

    Shapes: ``x [B, C, H, W]``, ``known`` broadcastable to it, ``mask [1 or B, 1, H, W]``.
    """
    return torch.where(mask.to(x.device) > 0.5, x, known.to(device=x.device, dtype=x.dtype).expand_as(x))


class KnownRegionHook(SamplingHook):
    """Keep ``known`` outside ``mask`` at every step (eq. 6); optional RePaint resampling.

    Args:
        known: ``[1 or B, 3, H, W]`` in [-1, 1]; values inside the mask are ignored.
        mask: ``[1 or B, 1, H, W]`` float {0, 1}, **1 = region to generate**, 0 = known.
        resample: extra repeats of each reverse step (RePaint's ``r - 1``; 0 = plain eq. 6).
            Each repeat costs one more model call.
        resample_until: resample only at timesteps ``t >= resample_until`` (the noisy part of
            the chain, where the regions are harmonised); ``None`` = at every step.
    """

    def __init__(
        self, known: torch.Tensor, mask: torch.Tensor, resample: int = 0, resample_until: int | None = None
    ) -> None:
        if int(resample) != resample or resample < 0:
            raise ValueError(f"resample must be a non-negative integer, got {resample!r}")
        if resample_until is not None and resample_until < 0:
            raise ValueError(f"resample_until must be a timestep >= 0 or None, got {resample_until!r}")
        self.mask = validate_mask(mask, known)
        self.known = known.float()
        self.resample = int(resample)
        self.resample_until = resample_until

    def _combine(self, x: torch.Tensor, t: int, ctx: SamplingContext) -> torch.Tensor:
        return paste_known(x, noised_reference(self.known, t, x, ctx), self.mask)

    def start(self, x: torch.Tensor, t: int, ctx: SamplingContext) -> torch.Tensor:
        # The starting noise already carries the known region at level t (matters when t_start < T-1).
        return self._combine(x, t, ctx)

    def after_step(self, x_prev: torch.Tensor, t_prev: int, out: ModelOutput, ctx: SamplingContext) -> torch.Tensor:
        # Eq. (6): x_gen * m + q(x_known at t_prev) * (1 - m); the clean known image at t_prev = -1.
        return self._combine(x_prev, t_prev, ctx)

    def resample_count(self, t: int) -> int:
        if self.resample_until is not None and t < self.resample_until:
            return 0
        return self.resample


def fill_masked_region(
    model: EpsModel,
    diffusion: GaussianDiffusion,
    sampler: Sampler,
    known: torch.Tensor,
    mask: torch.Tensor,
    *,
    batch_size: int | None = None,
    resample: int = 0,
    resample_until: int | None = None,
    extra_hooks: Sequence[SamplingHook] = (),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Inpaint / outpaint: the sampling loop plus a :class:`KnownRegionHook`.

    Args:
        known: ``[1 or B, 3, H, W]`` in [-1, 1] (e.g. a canvas from :func:`outpaint_canvas`).
        mask: ``[1 or B, 1, H, W]``, 1 = generate.
        batch_size: samples to draw (default ``known.shape[0]``).

    Returns:
        ``[B, 3, H, W]`` in [-1, 1]; equal to ``known`` wherever ``mask == 0``.
    """
    hook = KnownRegionHook(known.to(device), mask.to(device), resample=resample, resample_until=resample_until)
    loop = {"generator": generator, "device": device, "progress": progress}
    return sample_like(model, diffusion, sampler, known, batch_size, [hook, *extra_hooks], **loop)


def sample_like(
    model: EpsModel,
    diffusion: GaussianDiffusion,
    sampler: Sampler,
    like: torch.Tensor,
    batch_size: int | None,
    hooks: Sequence[SamplingHook],
    **loop: Any,
) -> torch.Tensor:
    """The sampling loop of the convenience functions (:func:`fill_masked_region`,
    :func:`~sindiffusion.applications.ilvr.ilvr_sample`): ``batch_size`` samples (default
    ``like.shape[0]``) of ``like``'s ``[C, H, W]``, ``[B, C, H, W]`` in [-1, 1]; ``loop`` holds
    :func:`sample_loop`'s other keywords."""
    b = batch_size if batch_size is not None else like.shape[0]
    return sample_loop(model, diffusion, sampler, (b, *like.shape[1:]), hooks=hooks, **loop)
