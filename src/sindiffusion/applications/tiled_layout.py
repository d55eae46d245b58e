"""A start for samples wider or narrower than the training image whose structures keep their size
(``sample.init: tile``, what ``auto`` uses at any size but the training size).

Why
---
The ``layout`` start (:mod:`.layout_start`) stretches the image's low-pass to the output size: a
2x-wide sample is one volcano twice as wide, an arch twice as long. The ``native`` start
(:mod:`.native_layout`) draws a layout at the output size by nearest-patch synthesis on a 12 px
copy of the image, which keeps the sizes but loses the image's proportions (a lawn grows over the
house) and its coherence; patch SWD, which penalises seams and wrong proportions, rose with it.
Measured on Places50 1-8 at 128 px, 2x wide: patch SWD 0.0268 (native) -> 0.0158 (tile).

What
----
The training image ``[1, 3, h, w]`` is laid out at the output size ``(H, W)`` before the layout's
low-pass (:func:`~.layout_start.layout_of`), one arrangement per sample:

* **columns**: wider: the image tiled side by side with a random phase (``W = 2w``: two copies,
  cut at a random column, so two volcanoes of the image's size, in other places in every sample);
  as wide (the training size, ``sample.init: tile`` only: ``auto`` uses ``layout`` there): the image
  rolled sideways by a random phase, so each sample's layout differs (Places50 1-25, 128 px, with
  ``init_t`` 0.5: pixel diversity 0.19 -> 0.42 for the patch model, 0.30 -> 0.49 for the UNet) at
  the price of one seam where the image's right edge meets its left; narrower: a crop at a random
  offset. Overlapping the copies and cutting between them where they
  agree (image quilting's minimum-error cut) was measured worse: Places50 1-25 at 2x wide, patch
  SWD 0.0159 -> 0.0203, and salient objects (a red slide, a golfer) dropped out of the samples;
  mirrored copies (no seam at all) too: 0.0159 -> 0.0202, lower on 3 of 25;
* **rows**: taller: the image's rows resampled to ``H`` (the scene stretched vertically, as the
  ``layout`` start does; tiling rows stacks a second horizon and a second sky, and extending the top
  and bottom rows drew flat bands: both measured worse); shorter: a crop at a random offset.

The low-pass (area down by ``init_factor``, bilinear up) blurs each seam where the image's right
edge meets its left edge, and the denoiser, started at ``init_t`` from this layout plus noise,
redraws it: at ``init_t`` the coarse scales still see noise enough to join the two sides. Where the
two edges differ a lot (a diagonal cliff, a tree cut by the border) a vertical seam can remain.
"""

from __future__ import annotations

import torch

from ..diffusion.loop import SamplingContext
from .layout_start import LayoutStartHook, layout_of

__all__ = ["TiledLayoutStartHook", "tiled_canvas"]


def tiled_canvas(image: torch.Tensor, size: tuple[int, int], shift: tuple[float, float]) -> torch.Tensor:
    """``image [B, C, h, w]`` laid out on ``size = (H, W)`` (module docstring): ``[B, C, H, W]``.

    ``shift = (u, v)`` in [0, 1): the phase of the tiled (or, at the training size, rolled) columns,
    or the offset of a narrower crop, as a fraction of the free range; and the offset of a shorter
    crop of rows.
    """
    h, w = image.shape[-2:]
    hc, wc = size
    u, v = shift
    if not (0 <= u < 1 and 0 <= v < 1):
        raise ValueError(f"shift must lie in [0, 1), got {shift}")
    dev = image.device
    # Rolled at the training size only: a taller canvas of the image's width keeps its columns (its
    # rows are stretched; a roll there was not measured).
    roll = wc > w or (wc == w and hc == h)
    phase = int(u * w) if roll else int(u * (w - wc + 1))
    cols = (phase + torch.arange(wc, device=dev)) % w
    if hc >= h:  # nearest rows of a vertical stretch (the low-pass that follows smooths them)
        rows = ((torch.arange(hc, device=dev) + 0.5) * h / hc).long().clamp_max(h - 1)
    else:
        rows = torch.arange(hc, device=dev) + int(v * (h - hc + 1))
    return image[:, :, rows][:, :, :, cols]


class TiledLayoutStartHook(LayoutStartHook):
    """The ``layout`` start with the training image tiled to the output size (:func:`tiled_canvas`,
    one random arrangement per sample) before its low-pass, instead of stretched.

    ``image``: the processed training image ``[1, 3, h, w]`` in [-1, 1]; ``factor``: the low-pass
    (``sample.init_factor``). The arrangements come from the loop's per-sample generators, so a
    sample does not depend on its batch.
    """

    def __init__(self, image: torch.Tensor, factor: int) -> None:
        super().__init__(image)
        self.image, self.factor = image.float(), factor

    def start(self, x: torch.Tensor, t: int, ctx: SamplingContext) -> torch.Tensor:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        # Uniform numbers from the per-sample generators (which draw normals): the normal CDF.
        z = ctx.randn_like(torch.empty((x.shape[0], 2)))
        shift = (0.5 * (1 + torch.erf(z / 2**0.5))).clamp(0, 1 - 1e-6)
        image = self.image.to(x.device)
        tiled = torch.cat([tiled_canvas(image, size, (float(u), float(v))) for u, v in shift])
        self.layout = layout_of(tiled, self.factor, size)
        return super().start(x, t, ctx)
