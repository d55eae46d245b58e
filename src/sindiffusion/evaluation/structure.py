"""Weight-free measures of what patch SWD barely sees: blur, stretch and dropped content.

All images are float RGB in [0, 1], ``[3, H, W]`` / ``[1, 3, H, W]`` (the training image) and
``[N, 3, h, w]`` or a sequence of images (the samples; any size: these measures are local, so a
sample of another size is compared with the training image at its own size).

* :func:`sharpness`: fine detail relative to the training image (1 = as crisp, < 1 blurred,
  > 1 grainy).
* :func:`stretch`: horizontal vs vertical edge energy relative to the training image (1 = shapes
  kept; a sideways stretch lowers it, a tall one raises it).
* :func:`coverage`: the share of the training image's patches that the samples contain (GANimator's
  coverage; stretching and dropped content lower it, copying raises it to 1).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._images import ImageBatch, as_image, as_image_list
from .patches import extract_patches, nearest_patch_distances, to_gray

__all__ = ["DEFAULT_COVERAGE_THRESHOLD", "coverage", "laplacian_energy", "sharpness", "stretch", "xy_gradient_ratio"]

#: Per-pixel RMS distance (images in [0, 1]) under which a training patch counts as present in a
#: sample: 0.03 (~8/255, 1.5x the copy threshold). Measured on Places50 1-25 at 96 px high (7x7
#: patches, stride 4): SinGAN's published samples cover 0.36, GPNN's 0.61, the image stretched 2x
#: wide 0.48, a 3x3 box blur of it 0.49, the image plus 1/100 noise 1.0, a constant image 0.01.
#: Coverage alone does not rank a stretched copy below a new image: read it with the copy fraction.
DEFAULT_COVERAGE_THRESHOLD = 0.03

_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _filter(gray: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` luma filtered by a 3x3 ``kernel`` on the valid region -> ``[N, H-2, W-2]``
    (no padding: a border would add edges the image does not have)."""
    return F.conv2d(gray[:, None].double(), kernel.double()[None, None])[:, 0]


def laplacian_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean |4-neighbour Laplacian| of each image's luma: ``[N, 3, H, W]`` -> ``[N]`` (float64)."""
    return _filter(to_gray(images), _LAPLACE).abs().mean(dim=(1, 2))


def xy_gradient_ratio(images: torch.Tensor) -> torch.Tensor:
    """Mean |Sobel d/dx| / mean |Sobel d/dy| of each image's luma: ``[N, 3, H, W]`` -> ``[N]``."""
    gray = to_gray(images)
    gx = _filter(gray, _SOBEL_X).abs().mean(dim=(1, 2))
    gy = _filter(gray, _SOBEL_X.T).abs().mean(dim=(1, 2))
    return gx / gy.clamp_min(1e-12)


def _median_ratio(per_fake: list[float], reference: float, what: str) -> float:
    if reference <= 0 or not math.isfinite(reference):
        raise ValueError(f"{what} is undefined for a training image without edges (constant image)")
    return float(np.median(per_fake) / reference)


@torch.no_grad()
def sharpness(real: torch.Tensor, fakes: ImageBatch) -> float:
    """Median over samples of (mean |Laplacian| of the sample's luma) / (the same of the training image).

    The Laplacian is local, so each image is measured at its own size. 1 = as crisp as the image;
    a blurred copy scores < 1, added grain > 1. Raises ValueError for a constant training image.
    """
    ref = float(laplacian_energy(as_image(real, "real"))[0])
    per = [float(laplacian_energy(f)[0]) for f in as_image_list(fakes, "fakes")]
    return _median_ratio(per, ref, "sharpness")


@torch.no_grad()
def stretch(real: torch.Tensor, fakes: ImageBatch) -> float:
    """Median over samples of (x/y Sobel gradient ratio of the sample) / (the same of the training image).

    A structure stretched sideways by ``s`` has its x-gradients divided by about ``s``: a 2x wide
    stretch of the image scores about 0.5, the image itself 1, a 2x tall stretch about 2.
    """
    ref = float(xy_gradient_ratio(as_image(real, "real"))[0])
    per = [float(xy_gradient_ratio(f)[0]) for f in as_image_list(fakes, "fakes")]
    return _median_ratio(per, ref, "stretch")


@torch.no_grad()
def coverage(
    real: torch.Tensor,
    fakes: ImageBatch,
    *,
    patch_size: int = 7,
    stride: int = 4,
    threshold: float = DEFAULT_COVERAGE_THRESHOLD,
    max_elements: int = 1 << 24,
) -> float:
    """Mean over samples of the fraction of training patches with a close match in the sample.

    Every ``patch_size`` patch of the training image (every ``stride`` px) is matched to its nearest
    patch among all positions of one sample; it is covered when the per-pixel RMS distance
    ``||p - q|| / sqrt(3 k^2)`` is under ``threshold``. Per sample, so that methods with one
    published sample and six of ours compare alike; a larger sample has more chances to contain a
    patch. The image itself scores 1; a constant image covers only the flat patches of the image.
    Read it beside the copy fraction: a copy also covers everything.
    """
    queries = extract_patches(as_image(real, "real"), patch_size, stride)
    norm = math.sqrt(queries.shape[1])
    fracs = []
    for fake in as_image_list(fakes, "fakes"):
        keys = extract_patches(fake, patch_size, 1)
        d = nearest_patch_distances(queries, keys, max_elements) / norm
        fracs.append(float((d < threshold).float().mean()))
    return float(np.mean(fracs))
