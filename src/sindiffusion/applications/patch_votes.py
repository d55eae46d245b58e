"""Patches in, patches out: the two steps shared by the weight-free patch hooks
(:mod:`.native_layout` and :mod:`.nearest_finish`).

* :func:`padded_patches`: every ``p x p`` patch of an image, zero-padded by ``p // 2`` (so a border
  patch carries a zero margin, and a border query prefers the image's border patches);
* :func:`fold_votes`: the patch chosen for every position of a canvas votes for the pixels it
  covers; the votes are averaged, optionally weighted, and only the image pixels of a chosen patch
  vote (its zero margin never darkens the result).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fold_votes", "padded_patches"]


def padded_patches(image: torch.Tensor, p: int) -> torch.Tensor:
    """Every ``p x p`` patch of ``image [B, C, H, W]``, zero-padded by ``p // 2``: ``[B, H W, C p p]``
    (row-major over positions)."""
    pad = p // 2
    return F.unfold(F.pad(image, (pad,) * 4), p).transpose(1, 2)


def fold_votes(
    table: torch.Tensor,
    index: torch.Tensor,
    source_size: tuple[int, int],
    size: tuple[int, int],
    p: int,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The canvas ``[B, C, H, W]`` (``size = (H, W)``) made of the patches ``table[index]``.

    Args:
        table: ``[N, C p p]`` the :func:`padded_patches` of one ``source_size`` image.
        index: ``[B, H W]`` the patch chosen for every canvas position (row-major).
        weight: ``[C p p]`` a weight of each pixel of a patch's vote (e.g. a window around its
            centre); ``None`` = equal votes.
    """
    (h, w), c = size, table.shape[1] // (p * p)
    real = padded_patches(torch.ones(1, 1, *source_size, device=table.device, dtype=table.dtype), p)[0]
    real = real.repeat(1, c)[index]  # [B, HW, Cpp]: 1 = a pixel of the image, 0 = its zero margin
    if weight is not None:
        real = real * weight
    pad = p // 2
    padded = (h + 2 * pad, w + 2 * pad)
    num = F.fold((table[index] * real).transpose(1, 2), padded, p)
    den = F.fold(real.transpose(1, 2), padded, p)
    return (num / den.clamp_min(1e-8))[..., pad : pad + h, pad : pad + w]
