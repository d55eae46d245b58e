"""Reading and writing images robustly.

Tensors are ``[C, H, W]`` or ``[B, C, H, W]`` float32 in [-1, 1] (the diffusion's space);
PIL images are RGB, 8 bit.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..artifacts import atomic_write


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and the problem."""


def load_image(path: str | Path, max_pixels: int | None = 100_000_000) -> Image.Image:
    """Open any image Pillow reads as 8-bit RGB.

    Handles EXIF orientation, palette/grey/CMYK modes, alpha (composited over white) and 16-bit,
    32-bit and float data (scaled to 8 bit by their range, see :func:`_value_range`). Raises
    :class:`ImageError` for a missing file, a non-image, a truncated or corrupt file, NaN pixels,
    or more than ``max_pixels`` pixels (``None`` = no limit): the checks of :func:`open_image`.
    """
    img = open_image(path, max_pixels)
    try:
        return to_rgb(img)
    except ValueError as err:  # NaN pixels of a float image
        raise ImageError(f"{path}: {err}") from err


def open_image(path: str | Path, max_pixels: int | None = 100_000_000) -> Image.Image:
    """The image in ``path`` as Pillow decodes it (any mode), EXIF orientation applied, after every
    check that an input image file passes (images, masks, references): :class:`ImageError` naming the
    file for a missing file, a non-image, a truncated or corrupt file, or more than ``max_pixels``
    pixels (a decompression bomb; ``None`` = no limit)."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: file not found")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old_limit, old_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
            Image.MAX_IMAGE_PIXELS = None  # our own limit below, with a clearer message
            ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, whatever a library set
            try:
                img = Image.open(path)
                w, h = img.size
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageError(
                        f"{path}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                        "(possible decompression bomb); raise preprocess.max_pixels or set "
                        "preprocess.allow_large: true if you trust this file"
                    )
                img.load()
            finally:
                Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_limit, old_truncated
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image file Pillow can read") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, ImageError):
            raise
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from err
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF must not make a readable image unusable
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha composited over white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = _value_range(arr, img.mode)
        arr = np.clip((arr - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def _value_range(arr: np.ndarray, mode: str) -> tuple[float, float]:
    """The range ``(lo, hi)`` that maps to black..white for 16-bit, 32-bit and float pixels.

    16 bit: 0..65535. Float and 32-bit integers hold no declared range, so the values tell:
    a float image within [0, 1] is 0..1 (the usual convention; dividing by 255 made it black),
    values within [0, 255] are 8-bit, within [0, 65535] 16-bit, anything else its own min..max.
    Raises ``ValueError`` for NaN or infinite pixels.
    """
    if mode.startswith("I;16"):
        return 0.0, 65535.0
    if not np.isfinite(arr).all():
        raise ValueError("the image has NaN or infinite pixel values")
    lo, hi = float(arr.min()), float(arr.max())
    for top in ((1.0,) if mode == "F" else ()) + (255.0, 65535.0):
        if lo >= 0 and hi <= top:
            return 0.0, top
    return (lo, hi) if hi > lo else (lo - 1.0, hi)  # a constant image: white rather than 0/0


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``[3, H, W]`` float32 in [-1, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` (or ``[1, 3, H, W]``) in [-1, 1] -> RGB PIL image."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    arr = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy(), mode="RGB")


def save_image(img: Image.Image | torch.Tensor, path: str | Path) -> Path:
    """Write a PNG (or any format by suffix) atomically."""
    if isinstance(img, torch.Tensor):
        img = tensor_to_image(img)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    return atomic_write(path, lambda tmp: img.save(tmp, format=fmt))


def make_grid(images: torch.Tensor, ncols: int | None = None, pad: int = 2) -> torch.Tensor:
    """``[B, 3, H, W]`` in [-1, 1] -> one ``[3, H', W']`` grid with white padding."""
    b, c, h, w = images.shape
    ncols = ncols or min(b, max(1, math.ceil(math.sqrt(b * h / w))))
    nrows = math.ceil(b / ncols)
    grid = torch.ones(c, nrows * (h + pad) + pad, ncols * (w + pad) + pad)
    for i in range(b):
        r, col = divmod(i, ncols)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = (
            images[i].float().cpu()
        )
    return grid


def save_grid(images: torch.Tensor, path: str | Path, ncols: int | None = None) -> Path:
    """Write :func:`make_grid` of ``images`` to ``path`` atomically."""
    return save_image(make_grid(images, ncols), path)
