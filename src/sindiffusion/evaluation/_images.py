"""Input checking shared by the metrics: images are float RGB in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

ImageBatch = torch.Tensor | Sequence[torch.Tensor]

_RANGE_TOL = 1e-3


def as_image(x: torch.Tensor, what: str = "image") -> torch.Tensor:
    """``[3,H,W]`` or ``[1,3,H,W]`` in [0,1] -> float32 ``[1,3,H,W]``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ValueError(f"{what}: expected shape [3,H,W] or [1,3,H,W], got {tuple(x.shape)}")
    return _check_range(x.float(), what)


def as_image_list(xs: ImageBatch, what: str = "samples") -> list[torch.Tensor]:
    """``[N,3,H,W]`` tensor or a sequence of ``[3,H,W]``/``[1,3,H,W]`` -> list of ``[1,3,H,W]``.

    Images in a sequence may differ in size.
    """
    if isinstance(xs, torch.Tensor):
        if xs.ndim == 3:
            xs = xs.unsqueeze(0)
        if xs.ndim != 4 or xs.shape[1] != 3:
            raise ValueError(f"{what}: expected shape [N,3,H,W], got {tuple(xs.shape)}")
        items = [xs[i : i + 1] for i in range(xs.shape[0])]
    else:
        items = list(xs)
    if not items:
        raise ValueError(f"{what}: no images")
    return [as_image(x, f"{what}[{i}]") for i, x in enumerate(items)]


def as_same_size_batch(xs: ImageBatch, what: str = "samples") -> torch.Tensor:
    """Like :func:`as_image_list`, but all images must share one size -> ``[N,3,H,W]``."""
    items = as_image_list(xs, what)
    sizes = {tuple(x.shape[-2:]) for x in items}
    if len(sizes) != 1:
        raise ValueError(f"{what}: all images must have the same size, got {sorted(sizes)}")
    return torch.cat(items, 0)


def _check_range(x: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: contains NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(f"{what}: values must be in [0, 1], got [{lo:.3f}, {hi:.3f}]")
    return x.clamp(0.0, 1.0)


def resize_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic (antialiased) resize of ``[N,3,H,W]`` in [0,1] to ``size = (H', W')``, clamped to [0,1].

    Used to bring a sample to its training image's size (and therefore scale)
    before patch comparisons, e.g. published baselines saved at another size.
    A no-op when the size already matches.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    squeeze = image.ndim == 3
    x = image.unsqueeze(0) if squeeze else image
    x = F.interpolate(x.float(), size=tuple(size), mode="bicubic", align_corners=False, antialias=True)
    x = x.clamp(0.0, 1.0)
    return x[0] if squeeze else x
