"""Tiny images and measurements shared by the layout-start tests (``test_native_layout``,
``test_tiled_layout``): a one-blob image, the widths of its blobs in a layout, and a sampling
context with one seeded generator per sample."""

from __future__ import annotations

import torch
from scipy import ndimage

from sindiffusion.diffusion import GaussianDiffusion, SamplingContext


def blob_image(h: int = 24, w: int = 32, blob: int = 8) -> torch.Tensor:
    """``[1, 3, h, w]`` in [-1, 1]: dark ground, one bright red square of side ``blob`` in the middle."""
    img = torch.full((1, 3, h, w), -0.8)
    top, left = (h - blob) // 2, (w - blob) // 2
    img[0, 0, top : top + blob, left : left + blob] = 0.9
    return img


def blob_widths(layout: torch.Tensor) -> list[int]:
    """Widths (px) of the red connected regions of ``layout [3, H, W]`` (red channel > 0.05), a blob
    cut by the canvas's edge included."""
    labels, n = ndimage.label(layout[0].numpy() > 0.05)
    return [int(s[1].stop - s[1].start) for s in ndimage.find_objects(labels)[:n]]


def sampling_ctx(batch: int, seed0: int = 0, size: tuple[int, int] = (24, 48)) -> SamplingContext:
    """A 100-step context whose sample ``i`` draws from its own generator seeded ``seed0 + i``."""
    diffusion = GaussianDiffusion(torch.linspace(1e-4, 0.02, 100, dtype=torch.float64))
    gens = [torch.Generator().manual_seed(seed0 + i) for i in range(batch)]
    return SamplingContext(diffusion, None, gens[0], torch.device("cpu"), (batch, 3, *size), per_sample=gens)
