"""The official training augmentation: a per-axis random rescale of the whole batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_rescale(
    image: torch.Tensor, scale_min: float, scale_max: float, multiple: int, generator: torch.Generator
) -> torch.Tensor:
    """Bicubic-resize ``image`` (``[B, C, H, W]`` in [-1, 1]) by independent factors
    U(scale_min, scale_max) for H and W, floored to a multiple of ``multiple`` (at least
    ``4 * multiple``). Returns ``[B, C, H', W']`` clamped to [-1, 1]."""
    if scale_min == scale_max == 1.0:
        return image
    u = torch.rand(2, generator=generator, dtype=torch.float64)
    sy, sx = (scale_min + (scale_max - scale_min) * u).tolist()
    h, w = image.shape[-2:]
    nh = max(4 * multiple, int(h * sy) // multiple * multiple)
    nw = max(4 * multiple, int(w * sx) // multiple * multiple)
    if (nh, nw) == (h, w):
        return image
    out = F.interpolate(image, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(-1.0, 1.0)


def random_crops(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """An independent random ``size x size`` crop per batch element (no-op if the image is smaller)."""
    b, _, h, w = batch.shape
    ch, cw = min(size, h), min(size, w)
    if (ch, cw) == (h, w):
        return batch
    ys = torch.randint(0, h - ch + 1, (b,), generator=generator).tolist()
    xs = torch.randint(0, w - cw + 1, (b,), generator=generator).tolist()
    return torch.stack([batch[i, :, y : y + ch, x : x + cw] for i, (y, x) in enumerate(zip(ys, xs))])
