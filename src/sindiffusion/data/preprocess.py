"""Preprocessing: resize the training image so the UNet can use it whole.

Official recipe: longer side at most 250 px (bicubic, antialiased, never upscaled). The
official code then crashes when H or W is not a multiple of 4; here each side is rounded to
the nearest multiple of the net's downsampling factor, which changes the aspect ratio by at
most half that factor in pixels (< 1 % at 250 px).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from ..models.kinds import Geometry
from ..models.receptive_field import analytic_receptive_field
from ..models.unet import UNetConfig
from .io import ImageError, load_image


def min_side(net: UNetConfig | Geometry) -> int:
    """Smallest allowed side: for a UNet the deepest level must still be 4 px wide."""
    return net.min_side if isinstance(net, Geometry) else 4 * net.size_multiple


def valid_size(height: int, width: int, max_size: int, multiple: int) -> tuple[int, int]:
    """Target ``(H, W)``: longer side <= ``max_size``, each a multiple of ``multiple``.

    Each side is the nearest multiple of the scaled side unless that would exceed the original
    side; then it is rounded down (no side is ever upscaled).
    """
    scale = min(1.0, max_size / max(height, width))
    h, w = height * scale, width * scale

    def snap(v: float, original: int) -> int:
        # Nearest multiple, but never more pixels than the original side (no upscaling).
        nearest = max(multiple, int(round(v / multiple)) * multiple)
        return min(nearest, max(multiple, original // multiple * multiple))

    th, tw = snap(h, height), snap(w, width)
    # Rounding up may cross max_size: step back down a multiple.
    while max(th, tw) > max(max_size, multiple) and max(th, tw) > multiple:
        if th >= tw:
            th -= multiple
        else:
            tw -= multiple
    return th, tw


@dataclass(frozen=True)
class PreprocessResult:
    source: str
    original_size: tuple[int, int]  # (H, W)
    processed_size: tuple[int, int]  # (H, W)
    receptive_field_px: int
    receptive_field_fraction: float  # RF / longer side (the paper's Table 4 uses RF/image)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["original_size"] = list(self.original_size)
        d["processed_size"] = list(self.processed_size)
        return d


def preprocess_image(
    path: str | Path,
    max_size: int,
    unet: UNetConfig | Geometry,
    max_pixels: int | None = 100_000_000,
    receptive_field: Callable[[tuple[int, int]], int] | None = None,
) -> tuple[Image.Image, PreprocessResult]:
    """Load ``path`` and resize it for training. Raises :class:`ImageError` on bad input.

    ``unet``: a UNet architecture, or the :class:`Geometry` of any model kind; ``receptive_field``
    maps the processed ``(H, W)`` to the model's receptive field in px (default: the UNet's).
    """
    img = load_image(path, max_pixels=max_pixels)
    w, h = img.size
    smallest = min_side(unet)
    if min(h, w) < smallest:
        raise ImageError(f"{path}: {w}x{h} is too small; the network needs at least {smallest}x{smallest} px")
    if max_size < smallest:
        raise ImageError(f"preprocess.max_size={max_size} is below the network's minimum side of {smallest} px")
    th, tw = valid_size(h, w, max_size, unet.size_multiple)
    if min(th, tw) < smallest:
        raise ImageError(
            f"{path}: {w}x{h} would become {tw}x{th} at preprocess.max_size={max_size}, below the "
            f"network's minimum of {smallest}x{smallest} px; raise max_size or crop the image"
        )
    if (th, tw) != (h, w):
        img = img.resize((tw, th), Image.Resampling.BICUBIC, reducing_gap=None)
    rf = receptive_field((th, tw)) if receptive_field else analytic_receptive_field(unet)
    return img, PreprocessResult(
        source=str(path),
        original_size=(h, w),
        processed_size=(th, tw),
        receptive_field_px=rf,
        receptive_field_fraction=round(rf / max(th, tw), 4),
    )
