"""Receptive field of the UNet: analytic (layer arithmetic) and empirical (gradient of one pixel)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from .unet import GroupNorm32, UNet, UNetConfig


class _Span:
    """For every position of a 1-D feature map: the interval [lo, hi] of input pixels it depends on."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self.lo, self.hi = lo, hi

    def conv3(self, stride: int = 1) -> "_Span":
        n = len(self.lo)
        lo = np.concatenate([self.lo[:1], self.lo, self.lo[-1:]])  # border: no new pixels
        hi = np.concatenate([self.hi[:1], self.hi, self.hi[-1:]])
        lo3 = np.minimum(np.minimum(lo[:-2], lo[1:-1]), lo[2:])
        hi3 = np.maximum(np.maximum(hi[:-2], hi[1:-1]), hi[2:])
        return _Span(lo3[::stride][: (n + stride - 1) // stride], hi3[::stride][: (n + stride - 1) // stride])

    def upsample(self) -> "_Span":
        return _Span(np.repeat(self.lo, 2), np.repeat(self.hi, 2))

    def union(self, other: "_Span") -> "_Span":
        return _Span(np.minimum(self.lo, other.lo), np.maximum(self.hi, other.hi))


def receptive_field_profile(config: UNetConfig, length: int = 2048) -> np.ndarray:
    """Exact 1-D receptive-field width of every output position, by propagating input intervals
    through the UNet's graph (3x3 convs, stride-2 convs, nearest upsampling, skips, 1x1 convs).
    Widths near the borders are truncated by the image edge."""
    m = config.size_multiple
    length = length // m * m
    pos = np.arange(length)
    x = _Span(pos.copy(), pos.copy())

    def resblock(h: _Span) -> _Span:
        return h.conv3().conv3().union(h)  # in_conv, out_conv; skip is identity or 1x1

    h = x.conv3()
    skips = [h]
    for level in range(config.levels):
        for _ in range(config.encoder_blocks):
            h = resblock(h)
            skips.append(h)
        if level < config.levels - 1:
            h = h.conv3(stride=2)
            skips.append(h)
    skips.pop()
    for i, level in enumerate(reversed(range(config.levels))):
        for j in range(config.decoder_blocks):
            if j < config.encoder_blocks + 1 and not (i == 0 and j == 0):
                h = h.union(skips.pop())
            h = resblock(h)
        if level > 0:
            h = h.upsample().conv3()
    h = h.conv3()
    return h.hi - h.lo + 1


def analytic_receptive_field(config: UNetConfig, position: int | None = None) -> int:
    """Side of the receptive field in pixels: the widest over output positions (or at ``position``
    of a long 1-D line). The official ``paper`` UNet gives 101 px.

    Nearest upsampling makes it depend slightly on the position (by the parity of the pixel at
    each level); the 2-D field of a pixel is the square of its 1-D widths.
    """
    profile = receptive_field_profile(config)
    if position is not None:
        return int(profile[position])
    margin = len(profile) // 4
    return int(profile[margin:-margin].max())


@torch.no_grad()
def _randomise(model: nn.Module, generator: torch.Generator) -> None:
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=generator) * 0.1)


def measure_receptive_field(config: UNetConfig, size: int | None = None, seed: int = 0) -> int:
    """Empirical receptive field: the width of the region of the input on which the centre
    output pixel depends (non-zero gradient), measured on a randomly initialised copy of the
    network (all weights random, zero-init layers included, 2 channels per level: the receptive
    field depends only on the topology) with GroupNorm statistics held constant (they otherwise
    couple every pixel of the image).
    """
    analytic = analytic_receptive_field(config)
    m = config.size_multiple
    size = size or ((analytic + 2 * m) // m) * m + 4 * m
    # The receptive field is a property of the topology, not of the width: measure a narrow copy.
    narrow = dataclasses.replace(config, base_channels=2, groups=1, dropout=0.0, grad_checkpointing=False)
    model = UNet(narrow)
    _randomise(model, torch.Generator().manual_seed(seed))
    for module in model.modules():
        if isinstance(module, GroupNorm32):
            module.detach_stats = True
    model.eval()
    x = torch.randn(1, config.in_channels, size, size, generator=torch.Generator().manual_seed(seed))
    x.requires_grad_(True)
    out = model(x, torch.tensor([500]))
    c = size // 2
    out[0, :, c, c].sum().backward()
    grad = x.grad[0].abs().sum(0)
    rows = torch.nonzero(grad.sum(1) > 0).flatten()
    cols = torch.nonzero(grad.sum(0) > 0).flatten()
    return int(max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))
