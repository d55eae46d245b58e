"""Patch-distribution matching after sampling (``sample.match_steps``), GPDM's step
(Elnekave & Weiss, "Generating natural images with direct patch distributions matching", 2022).

Why
---
Every denoiser here ends on a posterior *mean*. Where many training patches fit a noisy query
(foliage, a trunk a pixel or two to the left or right, a glowing cloud of sparks) the mean is their
average, so the samples lose the rarer, high-contrast patches: thin upright structures fade (the
``stretch`` metric below 1 at every size, 1x included), fine texture is smoothed, and a wider
canvas tiled from the image holds some of its patches twice and others not at all. The nearest-patch
finish (:mod:`.nearest_finish`) sharpens what is there, but cannot bring back what was averaged away:
the nearest sharp patch to a faded trunk is one without a trunk.

What
----
GPDM's answer is a global constraint: move the sample's pixels so that the *distribution* of its
patches matches the training image's, measured by the sliced Wasserstein distance (SWD). Each of
``steps`` Adam steps (learning rate ``lr``, pixels in [-1, 1]) draws ``projections`` random unit
directions in patch space, projects the ``patch x patch`` patches of the sample (every ``stride``-th
row and column, from a random offset) and of the image on them, and pulls each sample patch's
projection towards the image's value of the same rank (the 1-D optimal transport), i.e. descends

    sum over samples, directions d of  mean_i | v_i - Q_image,d(F_sample,d(v_i)) |,   v = P_x d

where ``F`` is the sample's empirical CDF along ``d`` and ``Q`` the image's quantile function (so
a sample of another size is compared with the image's distribution, not its patch count). Because
every rank is paired, over-represented patches must move and missing ones must appear: a faded
trunk regains its contrast, a doubled sky gives some of its surplus to the other contents. The
projections are convolutions with the directions as filters; the ranks come from a histogram
(:func:`_transport`), not a sort, which would cost most of a step on a CPU.

It runs coarse to fine over ``levels`` (downscale factors, e.g. ``(4, 2, 1)``): at each level the
sample and the image are area-downscaled by the factor, the sample's low-pass is matched, and only
the change is added back (bilinear up), so the coarse levels fix proportions and large structures
and the last level the texture.

The target is the image's patches, each counting once, unless ``row_mass`` weights them by their
centre row: a canvas laid out with more of some rows than the image (``sample.tile_rows: smooth``,
more sky above a tree of natural size) is then matched to those proportions, not pushed back to the
image's (which breaks the surplus into fragments). The weighted quantiles need a sort of the
image's projections (:func:`_weighted_quantile_table`); the sample's side is unchanged.

It uses only the training image, not the model, so it is a :class:`SamplingHook` (its
:meth:`PatchMatchFinish.finish`) that any model kind and start can use; the sample stage adds it
before the nearest-patch finish when both are set (the applications do not use it). The directions
and offsets come from their own generator seeded with ``seed``, and each sample's loss involves only
its own patches, so a sample does not depend on the batch it is drawn in.

Measured (Places50 1-25, 128 px, ``configs/patch.yaml``, 6 samples): patch SWD 0.0106 / 0.0188 /
0.0365 -> 0.0053 / 0.0071 / 0.0152 at 1x / 1.5x wide / 2x tall, sharpness 0.85-0.93 -> 0.96-0.97,
copy fraction down; but an object that the layout holds less of than the image comes back as
scattered fragments (a red slide, a zebra), and on the UNet's samples, which have no nearest finish,
it leaves a colour mottle. ``docs/results/any-size.md`` has the tables and sheets.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..diffusion.loop import SamplingContext, SamplingHook

__all__ = ["PatchMatchFinish", "match_patch_distribution"]


def _transport(values: torch.Tensor, table: torch.Tensor, bins: int = 1024) -> torch.Tensor:
    """Each row of ``values [R, N]`` moved to the quantile of the same rank in the distribution whose
    quantile function ``table [R, S]`` tabulates (:func:`_quantile_table`): the 1-D optimal transport
    map ``Q(F(v))``, ``[R, N]``.

    ``F``, the row's empirical CDF, comes from a ``bins``-bin histogram: the map is tabulated at
    the bins' edges and read with linear interpolation inside a bin. O(N) where a sort costs
    O(N log N) and, on a CPU, most of a step (measured: 2.3 s of 4.5 s for six 250x500 samples); a
    rank is off by at most the share of one bin.
    """
    r, n = values.shape
    lo = values.amin(dim=1, keepdim=True)
    span = (values.amax(dim=1, keepdim=True) - lo).clamp_min(1e-12)
    pos = (values - lo).mul_(bins / span)
    idx = pos.long().clamp_(0, bins - 1)
    pos.sub_(idx).clamp_(0, 1)  # now the fraction inside the bin
    flat = idx + torch.arange(r, device=values.device)[:, None] * bins
    counts = torch.bincount(flat.flatten(), minlength=r * bins).reshape(r, bins).to(values.dtype)
    edges_cdf = torch.cat([counts.new_zeros(r, 1), counts.cumsum(dim=1)], dim=1) / n  # F at the bin edges
    s = table.shape[1]
    at = edges_cdf * (s - 1)
    j = at.floor().long().clamp_(0, s - 2)
    w = (at - j).clamp_(0, 1)
    edge_map = table.gather(1, j) * (1 - w) + table.gather(1, j + 1) * w  # [R, bins + 1]
    return torch.lerp(edge_map.gather(1, idx), edge_map.gather(1, idx + 1), pos)


def _quantile_table(values: torch.Tensor, size: int) -> torch.Tensor:
    """``values [R, M]``'s quantile function tabulated at ``size`` evenly spaced levels in [0, 1]:
    ``[R, size]`` (each row ascending)."""
    levels = torch.linspace(0, 1, size, device=values.device, dtype=values.dtype)
    return torch.quantile(values, levels, dim=1).T.contiguous()


def _weighted_quantile_table(values: torch.Tensor, mass: torch.Tensor, size: int) -> torch.Tensor:
    """The quantile function of ``values [R, M]``, each value carrying the mass ``mass [M]`` (> 0),
    tabulated at ``size`` evenly spaced levels in [0, 1]: ``[R, size]``. A value of mass ``k`` times
    the smallest counts as ``k`` copies of it (at the middle of their ranks), so equal masses give
    :func:`torch.quantile`'s table (rank ``i`` of ``M`` at level ``i / (M - 1)``)."""
    r, m = values.shape
    ordered, order = values.sort(dim=1)
    w = (mass / mass.min()).to(values.dtype)[order]  # [R, M], the smallest mass one copy
    before = w.cumsum(dim=1) - w
    mid = ((before + 0.5 * (w - 1)) / (w.sum(dim=1, keepdim=True) - 1).clamp_min(1e-12)).clamp_(0, 1)
    levels = torch.linspace(0, 1, size, device=values.device, dtype=values.dtype).expand(r, size).contiguous()
    j = torch.searchsorted(mid, levels).clamp_(1, max(1, m - 1))
    lo, hi = mid.gather(1, j - 1), mid.gather(1, j)
    frac = ((levels - lo) / (hi - lo).clamp_min(1e-12)).clamp_(0, 1)
    return torch.lerp(ordered.gather(1, j - 1), ordered.gather(1, j), frac)


def _match_step(
    y: torch.Tensor,
    ref: torch.Tensor,
    weights: torch.Tensor,
    stride: int,
    offset: tuple[int, int],
    ref_mass: torch.Tensor | None = None,
) -> torch.Tensor:
    """The gradient, w.r.t. ``y [B, C, H, W]``, of the summed per-sample sliced W1 distance between
    ``y``'s patches (every ``stride``-th position from ``offset``) and ``ref [1, C, h, w]``'s, along
    the directions ``weights [K, C, p, p]`` (unit vectors as convolution filters). ``ref_mass``: the
    weight of each of ``ref``'s patches (``[M]``, row-major over its valid positions), None = equal."""
    oy, ox = offset
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        proj = F.conv2d(y[:, :, oy:, ox:], weights, stride=stride)  # [B, K, H', W']
        b, k = proj.shape[:2]
        flat = proj.detach().reshape(b * k, -1)
        with torch.no_grad():
            ref_proj = F.conv2d(ref, weights).reshape(k, -1)  # [K, M], every position
            if ref_mass is None:
                table = _quantile_table(ref_proj, 1025)
            else:
                table = _weighted_quantile_table(ref_proj, ref_mass, 1025)
            table = table.repeat(b, 1)
            target = _transport(flat, table)
            # d/dv of mean_i |v_i - target_i|, the 1-D optimal transport's pairing (per sample, per direction)
            grad = torch.sign(flat - target) / flat.shape[1]
        proj.backward(grad.reshape(proj.shape))
    return y.grad


def match_patch_distribution(
    x: torch.Tensor,
    image: torch.Tensor,
    *,
    patch: int = 7,
    steps: int = 30,
    lr: float = 0.02,
    projections: int = 32,
    levels: Sequence[int] = (4, 2, 1),
    stride: int = 2,
    seed: int = 0,
    row_mass: torch.Tensor | None = None,
) -> torch.Tensor:
    """Move ``x [B, 3, H, W]`` (in [-1, 1]) so that its ``patch``-sized patches are distributed as
    ``image [1, 3, h, w]``'s (module docstring); returns ``[B, 3, H, W]`` clamped to [-1, 1].

    ``levels``: downscale factors, coarse first (1 = full resolution); a level at which the sample
    or the image would be smaller than one patch is skipped. ``stride``: the sample's patches are
    taken every ``stride``-th row and column, from a random offset drawn at each step (every
    position is visited over the steps; ``stride^2`` times cheaper). ``steps = 0`` returns ``x``.
    ``row_mass``: ``[h]``, > 0, how much of the sample each of the image's rows should make up (e.g.
    :func:`~.tiled_layout.row_heights` of a taller canvas whose smooth rows were repeated): the
    image's patches are weighted by their centre row's mass, so a sample with more sky than the
    image is not pushed back to the image's share of sky. None = every patch counts once.
    """
    if x.dim() != 4 or image.dim() != 4 or image.shape[0] != 1 or x.shape[1] != image.shape[1]:
        raise ValueError(
            f"x must be [B, C, H, W] and image [1, C, h, w], got {tuple(x.shape)} and {tuple(image.shape)}"
        )
    if patch < 1 or steps < 0 or lr <= 0 or projections < 1 or stride < 1 or any(int(f) < 1 for f in levels):
        raise ValueError(
            f"need patch >= 1, steps >= 0, lr > 0, projections >= 1, stride >= 1 and levels >= 1; got patch={patch}, "
            f"steps={steps}, lr={lr}, projections={projections}, stride={stride}, levels={list(levels)}"
        )
    if row_mass is not None and (row_mass.shape != (image.shape[-2],) or not bool((row_mass > 0).all())):
        raise ValueError(
            f"row_mass must be [{image.shape[-2]}] (one per image row) and > 0, got {tuple(row_mass.shape)}"
        )
    if steps == 0:
        return x
    out = x.detach().float()
    ref_full = image.detach().to(out.device, torch.float32)
    gen = torch.Generator().manual_seed(seed)
    c = out.shape[1]
    for factor in (int(f) for f in levels):
        low = F.avg_pool2d(out, factor) if factor > 1 else out
        ref = F.avg_pool2d(ref_full, factor) if factor > 1 else ref_full
        if min(low.shape[-2:]) < patch + stride - 1 or min(ref.shape[-2:]) < patch:
            continue
        mass = None
        if row_mass is not None:
            rows = F.avg_pool1d(row_mass.float()[None, None], factor)[0, 0] if factor > 1 else row_mass.float()
            centre = rows[patch // 2 : patch // 2 + ref.shape[-2] - patch + 1]  # the valid patches' centre rows
            mass = centre[:, None].expand(-1, ref.shape[-1] - patch + 1).reshape(-1).to(out.device)
        y = low.clone().requires_grad_(True)
        opt = torch.optim.Adam([y], lr=lr)
        for _ in range(steps):
            d = torch.randn(projections, c * patch * patch, generator=gen)
            d = (d / d.norm(dim=1, keepdim=True)).reshape(projections, c, patch, patch).to(out.device)
            offset = tuple(int(v) for v in torch.randint(0, stride, (2,), generator=gen))
            y.grad = _match_step(y, ref, d, stride, offset, mass)
            opt.step()
        matched = y.detach()
        if factor > 1:
            change = F.interpolate(matched - low, size=out.shape[-2:], mode="bilinear", align_corners=False)
            out = out + change
        else:
            out = matched
    return out.clamp(-1.0, 1.0).to(x.dtype)


class PatchMatchFinish(SamplingHook):
    """After the last step, match the sample's patch distribution to the training image's
    (:func:`match_patch_distribution`). ``image``: the processed training image ``[1, 3, h, w]`` in
    [-1, 1]; ``options``: :func:`match_patch_distribution`'s keyword arguments (``patch``, ``steps``,
    ``lr``, ``projections``, ``levels``, ``stride``, ``seed``, ``row_mass``)."""

    def __init__(self, image: torch.Tensor, **options: Any) -> None:
        self.image = image.float()
        self.options = options

    def finish(self, x0: torch.Tensor, ctx: SamplingContext) -> torch.Tensor:
        return match_patch_distribution(x0, self.image.to(x0.device), **self.options)
