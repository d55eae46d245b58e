"""Start random samples from the training image's layout instead of pure noise (SDEdit, GPNN-style).

A translation-equivariant patch denoiser (the closed form, or a UNet with a small receptive
field) puts each kind of content anywhere: from pure noise it may draw the sky at the bottom.
GPNN fixes the layout by starting its coarsest scale from the downscaled image plus noise; the
same idea in diffusion terms is SDEdit (Meng et al. 2022): begin the one sampling loop at step
``t_start`` from ``q(x_t | x0 = low-pass(training image))``::

    x_{t_start} = sqrt(abar) * up(down(y, 1/factor) -> H x W) + sqrt(1 - abar) * eps

The low-pass (area-down by ``factor``, bilinear back up, then resized to the output size, so a
wider sample stretches the layout as GPNN's retargeting does) keeps only the arrangement of large
regions; ``t_start`` is the diversity knob: higher = more freedom, lower = closer to the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..diffusion.loop import SamplingContext, SamplingHook


def layout_of(image: torch.Tensor, factor: int, size: tuple[int, int]) -> torch.Tensor:
    """Low-pass of ``image [1, 3, H, W]`` (area-down by ``factor``, bilinear up) resized to ``size``."""
    if factor < 1:
        raise ValueError(f"layout factor must be >= 1, got {factor}")
    h, w = image.shape[-2:]
    small = F.interpolate(image, size=(max(1, h // factor), max(1, w // factor)), mode="area")
    return F.interpolate(small, size=size, mode="bilinear", align_corners=False)


class LayoutStartHook(SamplingHook):
    """Replace the loop's starting noise at ``t`` by the noised layout (``layout [1 or B, 3, H, W]`` in
    [-1, 1]: one for the whole batch, or one per sample)."""

    def __init__(self, layout: torch.Tensor) -> None:
        self.layout = layout.float()

    def start(self, x: torch.Tensor, t: int, ctx: SamplingContext) -> torch.Tensor:
        if tuple(x.shape[-2:]) != tuple(self.layout.shape[-2:]):
            raise ValueError(
                f"sample size {tuple(x.shape[-2:])} differs from the layout {tuple(self.layout.shape[-2:])}"
            )
        abar = ctx.diffusion.abar(t)
        # x is the loop's seeded standard normal noise: reuse it as eps (same numbers on any device).
        return abar**0.5 * self.layout.to(x.device, x.dtype).expand_as(x) + (1 - abar) ** 0.5 * x
