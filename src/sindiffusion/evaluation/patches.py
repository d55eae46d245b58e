"""Weight-free metrics: pixel diversity, copy/memorisation, patch-distribution fidelity.

No network and no download: these can always be computed. All images are
float RGB in [0,1]. "Patch" means a ``k x k x 3`` window flattened to a vector
of ``D = 3 k^2`` values (``torch.nn.functional.unfold`` order).

* :func:`pixel_diversity`: SinGAN's diversity measure.
* :func:`copy_score`: how close generated patches are to training patches
  (a model that copies its input scores distance ~0 and copy fraction ~1).
* :func:`patch_swd`: sliced Wasserstein distance between multi-scale patch
  distributions of the real image and each sample (lower is more faithful).

Patch comparisons assume the samples are at the training image's scale. When
a sample was saved at another size (e.g. a published baseline), bring it to
the training image's size first with :func:`resize_to` (bicubic, antialiased).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._images import ImageBatch, as_image, as_image_list, as_same_size_batch, resize_to

__all__ = [
    "DEFAULT_COPY_THRESHOLD",
    "copy_score",
    "extract_patches",
    "nearest_patch_distances",
    "patch_swd",
    "pixel_diversity",
    "resize_to",
    "to_gray",
]

#: Per-pixel RMS distance (images in [0,1]) under which a generated patch
#: counts as a near-exact copy of a training patch: 0.02 is about 5/255.
#: Measured on Places50 image 1 (7x7 patches): re-encoding it as JPEG q90
#: leaves 84% of patches under 0.02 (a shifted crop: 100%). Flat regions
#: (sky) fall under it whatever the generator, so the fraction is never ~0
#: for natural images: compare methods, and read it with ``copy_nn_dist``.
DEFAULT_COPY_THRESHOLD = 0.02

# ITU-R BT.601 luma, as PIL's convert("L") and skimage's rgb2gray-like conventions.
_GRAY = (0.299, 0.587, 0.114)


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """``[N,3,H,W]`` RGB -> ``[N,H,W]`` luma (BT.601 weights 0.299/0.587/0.114)."""
    w = images.new_tensor(_GRAY).view(1, 3, 1, 1)
    return (images * w).sum(dim=1)


def pixel_diversity(real: torch.Tensor, fakes: ImageBatch) -> float:
    """SinGAN's pixel diversity.

    For every pixel, the standard deviation of its gray value over the
    samples; averaged over pixels; divided by the standard deviation of the
    real image's gray pixels. Population std (``ddof=0``) in both places.

    Args:
        real: ``[3,H,W]`` or ``[1,3,H,W]`` in [0,1] (only its gray std is used,
            so its size need not match the samples').
        fakes: ``N >= 2`` samples ``[N,3,h,w]`` in [0,1]; they must all share
            one size (the std is per pixel position).

    Returns:
        0 for identical samples; about 1 when samples vary per pixel as much
        as the real image varies across pixels.
    """
    r = to_gray(as_image(real, "real").double())
    x = to_gray(as_same_size_batch(fakes, "fakes").double())
    if x.shape[0] < 2:
        raise ValueError("pixel diversity needs at least 2 samples")
    denom = float(r.std(unbiased=False))
    if denom == 0.0:
        raise ValueError("pixel diversity is undefined for a constant real image")
    return float(x.std(dim=0, unbiased=False).mean()) / denom


def extract_patches(image: torch.Tensor, patch_size: int = 7, stride: int = 1) -> torch.Tensor:
    """All ``patch_size`` windows of ``[1,3,H,W]`` at ``stride`` -> ``[L, 3*patch_size^2]``."""
    if image.shape[-1] < patch_size or image.shape[-2] < patch_size:
        raise ValueError(f"image {tuple(image.shape[-2:])} smaller than patch size {patch_size}")
    cols = F.unfold(image.float(), kernel_size=patch_size, stride=stride)  # [1, D, L]
    return cols[0].T.contiguous()


def nearest_patch_distances(queries: torch.Tensor, keys: torch.Tensor, max_elements: int = 1 << 24) -> torch.Tensor:
    """For each row of ``queries [Lq,D]``, its L2 distance to the nearest row of ``keys [Lk,D]``.

    Exhaustive search in chunks of query rows, so that at most
    ``max_elements`` distances are held at once (64 MiB of float32 by
    default). Each chunk uses the expansion ``|q|^2 + |k|^2 - 2 q.k`` (what
    ``torch.cdist`` does on its matrix-product path) with the key norms
    computed once and the square root taken of the minimum only: about 2x
    faster than calling ``torch.cdist`` per chunk on a 2-core CPU, same
    result. Both sets are centred on the keys' mean first to limit float32
    cancellation (an exact copy gives a distance ~1e-3 at most). Returns ``[Lq]``.
    """
    center = keys.mean(dim=0, keepdim=True)
    q, k = (queries - center).float(), (keys - center).float()
    k_sq = (k * k).sum(dim=1)  # [Lk]
    k_t = k.T.contiguous()  # [D, Lk]
    rows = max(1, max_elements // max(1, k.shape[0]))
    mins = [torch.addmm(k_sq, q[i : i + rows], k_t, alpha=-2.0).amin(dim=1) for i in range(0, q.shape[0], rows)]
    return (torch.cat(mins) + (q * q).sum(dim=1)).clamp_min(0.0).sqrt()


@torch.no_grad()
def copy_score(
    real: torch.Tensor,
    fakes: ImageBatch,
    *,
    patch_size: int = 7,
    stride: int = 4,
    real_stride: int = 1,
    threshold: float = DEFAULT_COPY_THRESHOLD,
    max_elements: int = 1 << 24,
) -> dict[str, float]:
    """Copy/memorisation score of samples against their training image.

    Every ``patch_size`` patch of each sample (taken every ``stride`` pixels)
    is matched to its nearest training patch (all positions when
    ``real_stride = 1``, so shifted copies match exactly). The distance is
    the per-pixel RMS difference ``||p - q||_2 / sqrt(3 k^2)`` (images in [0,1]).

    Args:
        real: training image ``[3,H,W]`` or ``[1,3,H,W]`` in [0,1].
        fakes: ``[N,3,h,w]`` or a sequence of images in [0,1] at the training
            image's scale (sizes may differ; see :func:`resize_to`).
        patch_size, stride, real_stride: patch geometry.
        threshold: RMS distance under which a patch counts as a copy.
        max_elements: bound on distances held in memory at once.

    Returns:
        ``{"copy_nn_dist": mean NN distance, "copy_fraction": fraction of
        patches closer than threshold}``, both averaged over samples (each
        sample weighs the same). Copying the input gives ~0 and ~1.
    """
    keys = extract_patches(as_image(real, "real"), patch_size, real_stride)
    norm = math.sqrt(keys.shape[1])
    dists, fracs = [], []
    for fake in as_image_list(fakes, "fakes"):
        d = nearest_patch_distances(extract_patches(fake, patch_size, stride), keys, max_elements) / norm
        dists.append(float(d.mean()))
        fracs.append(float((d < threshold).float().mean()))
    return {"copy_nn_dist": float(np.mean(dists)), "copy_fraction": float(np.mean(fracs))}


def _quantiles(sorted_x: torch.Tensor, m: int) -> torch.Tensor:
    """Linear-interpolated quantiles at ``(i + 0.5)/m`` of row-sorted ``[P,L]`` -> ``[P,m]``."""
    n = sorted_x.shape[1]
    if n == m:
        return sorted_x
    pos = ((torch.arange(m, dtype=torch.float64) + 0.5) * n / m - 0.5).clamp(0, n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    w = (pos - lo).to(sorted_x.dtype)
    return sorted_x[:, lo] * (1 - w) + sorted_x[:, hi] * w


def _sorted_projections(image: torch.Tensor, proj: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """Patches of ``[1,3,H,W]`` projected on ``proj [D,P]``, each direction sorted -> ``[P,L]``."""
    cols = F.unfold(image, kernel_size=patch_size, stride=stride)[0]  # [D, L]
    # numpy's sort: ~20x faster than torch.sort (which also builds indices) on CPU
    return torch.from_numpy(np.sort((proj.T @ cols).numpy(), axis=1))


@torch.no_grad()
def patch_swd(
    real: torch.Tensor,
    fakes: ImageBatch,
    *,
    patch_size: int = 7,
    num_scales: int = 3,
    num_projections: int = 128,
    stride: int = 1,
    seed: int = 0,
) -> float:
    """Sliced Wasserstein-1 distance between real and generated patch distributions.

    At each scale ``s = 0 .. num_scales-1`` both images are reduced by
    ``2^s`` (repeated 2x2 average pooling), all ``patch_size`` patches are
    taken (every ``stride`` px) and projected on ``num_projections`` random
    unit directions (drawn from ``torch.Generator().manual_seed(seed + s)``:
    the same directions for every sample and call). Per direction, the 1-D
    Wasserstein-1 distance is the mean absolute difference of the two
    projected distributions' quantiles (``min(L_real, L_fake)`` of them, so
    images of different sizes compare fairly). Result: mean over directions,
    over scales (those where both images still hold a patch) and over samples.

    Args:
        real: ``[3,H,W]`` or ``[1,3,H,W]`` in [0,1].
        fakes: ``[N,3,h,w]`` or a sequence of images in [0,1].

    Returns:
        A float >= 0, exactly 0 for identical images; lower is more faithful.
    """
    r = as_image(real, "real")
    fakes_l = as_image_list(fakes, "fakes")
    dim = 3 * patch_size * patch_size
    projs, real_sorted = [], []  # per scale, computed once for all fakes
    for s in range(num_scales):
        if s > 0:
            r = F.avg_pool2d(r, 2)
        if min(r.shape[-2:]) < patch_size:
            break
        g = torch.Generator().manual_seed(seed + s)
        proj = torch.randn(dim, num_projections, generator=g)
        projs.append(proj / proj.norm(dim=0, keepdim=True))
        real_sorted.append(_sorted_projections(r, projs[-1], patch_size, stride))
    per_fake = []
    for f in fakes_l:
        vals = []
        for s, (proj, pr) in enumerate(zip(projs, real_sorted)):
            if s > 0:
                f = F.avg_pool2d(f, 2)
            if min(f.shape[-2:]) < patch_size:
                break
            pf = _sorted_projections(f, proj, patch_size, stride)
            m = min(pr.shape[1], pf.shape[1])
            vals.append(float((_quantiles(pr, m) - _quantiles(pf, m)).abs().mean()))
        if not vals:
            raise ValueError(f"images smaller than patch size {patch_size}")
        per_fake.append(float(np.mean(vals)))
    return float(np.mean(per_fake))
