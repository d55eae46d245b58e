"""A start for samples of any size whose structures keep the training image's size (``sample.init: native``).

Why
---
The ``layout`` start (:mod:`.layout_start`) stretches the image's low-pass to the output size. At
the training size that is the image's own layout; at 2x wide it is the scene stretched 2x, and the
denoiser, which sees almost no noise at the coarse scales at ``init_t``, keeps the stretched blobs:
one volcano twice as wide instead of two. Every peer (SinGAN, GPNN, GPDM, efficient-SID) instead
generates the coarsest canvas *at the output size* from the image's own coarse structures.

What
----
:func:`native_layout` draws that coarse canvas by nearest-patch synthesis (GPNN's step, with its
*completeness* normalisation) on a tiny copy of the image, then upsamples it to the output size:

1. ``coarse`` = the image area-downsampled so that its short side is ``side`` px (about 2 patches);
   the canvas is the output size downsampled by the same factor (so structures keep their size).
2. The canvas starts as the image's **row profile** (the mean colour of each coarse row, resized to
   the canvas height and repeated across its width) plus Gaussian noise of std ``noise``: the
   vertical order of the scene (sky over hills over field) is kept, and nothing horizontal is
   inherited, so no structure can be stretched sideways.
3. ``iters`` times: every ``patch x patch`` patch of the canvas (zero-padded like the image's, so a
   border patch prefers the image's border patches: the sky stays at the top) is replaced by its
   nearest patch of ``coarse``; for a canvas *wider* than the image's aspect the distances are divided
   by ``alpha + `` the smallest distance of each image patch to any canvas patch (completeness: a
   patch already used well elsewhere is penalised, so a 2x-wide canvas holds two volcanoes rather
   than one long one). Not for a taller canvas: there completeness stacks a second horizon and a
   second sky under the first, while without it the row profile keeps one sky on top (seen on
   Places50 at 2x tall). The overlapping votes are averaged, counting only real pixels (a border
   patch's zero margin never votes).
4. Bilinear upsampling to the output size gives ``[1, 3, H, W]``, used exactly as the stretched
   low-pass of the ``layout`` start: noised to ``init_t`` by :class:`NativeLayoutStartHook`.

The layout is weight-free and knows nothing about the model, so the UNet and the patch model
start from the same natural-size arrangement and refine it. Each sample's layout is drawn from
that sample's own noise generator (its ``(seed, index)``), so it does not depend on the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..diffusion.loop import SamplingContext
from .layout_start import LayoutStartHook
from .patch_votes import fold_votes, padded_patches

__all__ = ["COMPLETENESS_ALPHA", "NativeLayoutStartHook", "canvas_size", "native_layout"]

#: GPNN's completeness constant for distances per pixel of images in [-1, 1]: small, so an image
#: patch no canvas patch is close to wins over one that is used already.
COMPLETENESS_ALPHA = 0.005


def canvas_size(
    train_size: tuple[int, int], size: tuple[int, int], side: int, patch: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(coarse image size, coarse canvas size)`` for a ``train_size`` image drawn at ``size``:
    the image downsampled so its short side is ``side`` px and the output by the same factor (each
    side at least ``patch``). ``ValueError`` if ``side < patch``."""
    if side < patch:
        raise ValueError(f"sample.layout_side ({side}) must be at least sample.layout_patch ({patch})")
    factor = min(train_size) / side
    coarse = (max(patch, round(train_size[0] / factor)), max(patch, round(train_size[1] / factor)))
    canvas = (max(patch, round(size[0] / factor)), max(patch, round(size[1] / factor)))
    return coarse, canvas


def native_layout(
    image: torch.Tensor,
    size: tuple[int, int],
    noise: torch.Tensor | None = None,
    *,
    side: int = 12,
    patch: int = 7,
    noise_std: float = 1.0,
    iters: int = 8,
    alpha: float = COMPLETENESS_ALPHA,
    completeness: bool | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A coarse layout of ``image [1, 3, h, w]`` (in [-1, 1]) drawn at ``size = (H, W)``: ``[B, 3, H, W]``.

    ``noise``: ``[B, 3, Hc, Wc]`` standard normal noise at the coarse canvas size
    (:func:`canvas_size`), one per layout; ``None`` draws one from ``generator``. The steps are in
    the module docstring; every value stays within the image's colours (averages of its pixels).
    ``completeness``: None = on when the output is wider than the image's aspect, off otherwise.
    """
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"the training image must be [1, 3, h, w], got {tuple(image.shape)}")
    image = image.float()
    coarse_size, canvas = canvas_size(tuple(image.shape[-2:]), size, side, patch)
    if noise is None:
        noise = torch.randn((1, 3, *canvas), generator=generator)
    if tuple(noise.shape[-2:]) != canvas:
        raise ValueError(f"noise must be [B, 3, {canvas[0]}, {canvas[1]}], got {tuple(noise.shape)}")
    noise = noise.to(image.device, torch.float32)
    coarse = F.interpolate(image, size=coarse_size, mode="area")
    keys = padded_patches(coarse, patch)[0]  # [N, 3pp]
    key_sq = (keys**2).sum(1)
    # Row profile: the scene's vertical order, nothing horizontal (see the module docstring).
    rows = F.interpolate(coarse.mean(-1, keepdim=True), size=(canvas[0], 1), mode="bilinear", align_corners=False)
    x = rows.expand(noise.shape[0], -1, -1, canvas[1]) + noise_std * noise
    if completeness is None:
        completeness = size[1] * image.shape[-2] > size[0] * image.shape[-1]  # W/H above the image's
    for _ in range(iters):
        q = padded_patches(x, patch)  # [B, M, 3pp]
        dist = ((q**2).sum(-1, keepdim=True) + key_sq - 2 * q @ keys.T).clamp_min(0) / keys.shape[1]  # [B, M, N]
        if completeness:  # GPNN: divide by alpha + each image patch's best distance in this canvas
            dist = dist / (alpha + dist.amin(1, keepdim=True))
        x = fold_votes(keys, dist.argmin(-1), coarse_size, canvas, patch)
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False).clamp(-1, 1)


class NativeLayoutStartHook(LayoutStartHook):
    """The ``layout`` start with a :func:`native_layout` per sample instead of the stretched low-pass.

    ``image``: the processed training image ``[1, 3, h, w]`` in [-1, 1]; the other arguments are
    :func:`native_layout`'s. The layouts of a batch are drawn in :meth:`start` from the loop's
    per-sample generators (the same numbers whatever the batch), then noised like the base hook.
    """

    def __init__(
        self, image: torch.Tensor, *, side: int = 12, patch: int = 7, noise_std: float = 1.0, iters: int = 8
    ) -> None:
        super().__init__(image)
        self.image = image.float()
        self.options = {"side": side, "patch": patch, "noise_std": noise_std, "iters": iters}

    def start(self, x: torch.Tensor, t: int, ctx: SamplingContext) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        _, canvas = canvas_size(tuple(self.image.shape[-2:]), size, self.options["side"], self.options["patch"])
        noise = ctx.randn_like(torch.empty((x.shape[0], 3, *canvas), device=x.device))
        self.layout = native_layout(self.image.to(x.device), size, noise, **self.options)
        return super().start(x, t, ctx)
