"""SIFID: Single-Image Fréchet Inception Distance (SinGAN, Shaham et al. 2019).

Protocol (SinGAN's ``SIFID/sifid_score.py``):

1. Run ONE real and ONE fake image through torchvision's ImageNet Inception-v3
   up to an early layer.
2. Treat every spatial position of the feature map as one sample: a feature
   map ``[C,h,w]`` gives ``h*w`` samples of dimension ``C``.
3. Fit a Gaussian (mean, covariance) to each image's samples and take the
   Fréchet distance ``|mu1-mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
4. Average over the fakes (each fake against the same real image).

Layers (``layer`` argument; the metric name carries it, e.g. ``sifid_pool1``):

* ``"pool1"``: 64 channels, output of ``Conv2d_2b_3x3``, i.e. just before the
  first max-pool. This is what SinGAN's released script computes (its
  "block 0" holds Conv2d_1a/2a/2b without the pool).
* ``"pool2"``: 192 channels, output of ``Conv2d_4a_3x3``, just before the
  second max-pool, as SinGAN's paper describes.

Input normalisation: images are float RGB in [0,1] and are mapped to [-1,1]
with ``2x - 1``, exactly as SinGAN's ``InceptionV3(normalize_input=True)``
does. This is also the input range torchvision's ported Google Inception
weights expect: torchvision's own ``transform_input`` only converts
ImageNet-mean/std-normalised input back to this ``2x - 1`` range, so no
separate mean/std step is applied. No resizing to 299x299 (SinGAN's
``resize_input=False``). BatchNorm runs in eval mode.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision
from scipy import linalg
from torch import nn

from ._frozen import FrozenNet
from ._images import ImageBatch, as_image, as_image_list
from .weights import find_weights

__all__ = [
    "SIFID_LAYERS",
    "InceptionFeatures",
    "frechet_distance",
    "gaussian_stats",
    "sifid",
    "sifid_metric_name",
    "sifid_per_image",
]

log = logging.getLogger(__name__)

#: layer name -> number of feature channels
SIFID_LAYERS: dict[str, int] = {"pool1": 64, "pool2": 192}


def sifid_metric_name(layer: str) -> str:
    """The metric's key in result dicts, e.g. ``"sifid_pool1"``."""
    _check_layer(layer)
    return f"sifid_{layer}"


def _check_layer(layer: str) -> None:
    if layer not in SIFID_LAYERS:
        raise ValueError(f"unknown SIFID layer {layer!r}; choose one of {sorted(SIFID_LAYERS)}")


class InceptionFeatures(FrozenNet):
    """Inception-v3 truncated before its first or second max-pool.

    Args:
        layer: ``"pool1"`` (64 ch) or ``"pool2"`` (192 ch); see module docstring.
        weights_dir: where to look for ``inception_v3_google-0cc3c7c2.pth``
            (default: the torch hub cache); see :func:`find_weights`.
        random_init: skip loading weights and keep torchvision's random
            initialisation. Only for tests: the instance is marked
            ``is_random = True`` and its numbers are refused by the metric
            writers.
        device: where to run.

    Raises:
        MissingWeightsError: pretrained weights requested but not on disk.

    Attributes:
        is_random: True when the backbone is not the pretrained network.
        layer, channels: the chosen layer and its channel count.
        weights_file: path of the loaded checkpoint (None when random).
    """

    def __init__(
        self,
        layer: str = "pool1",
        *,
        weights_dir: str | Path | None = None,
        random_init: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        _check_layer(layer)
        self.layer = layer
        self.channels = SIFID_LAYERS[layer]
        self.is_random = bool(random_init)
        self.weights_file: Path | None = None
        net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
        if not random_init:
            path = find_weights("inception_v3", weights_dir)
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
            self.weights_file = path
        layers: list[nn.Module] = [net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3]
        if layer == "pool2":
            layers += [net.maxpool1, net.Conv2d_3b_1x1, net.Conv2d_4a_3x3]
        self.body = nn.Sequential(*layers)
        self.requires_grad_(False)
        self.eval()
        self.to(device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[N,3,H,W]`` in [0,1] -> features ``[N,C,h,w]`` (C = 64 or 192)."""
        x = images.to(self.device, torch.float32)
        return self.body(2.0 * x - 1.0)


def gaussian_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[C]`` and covariance ``[C,C]`` (float64, unbiased) of a feature map.

    ``features``: ``[C,h,w]`` or ``[1,C,h,w]`` (every position is a sample) or
    ``[M,C]`` (rows are samples).
    """
    f = features.detach().to("cpu", torch.float64)
    if f.ndim == 4:
        if f.shape[0] != 1:
            raise ValueError("gaussian_stats takes the features of ONE image")
        f = f[0]
    if f.ndim == 3:
        f = f.reshape(f.shape[0], -1).T
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need [M>=2, C] samples, got shape {tuple(features.shape)}")
    a = f.numpy()
    return a.mean(axis=0), np.cov(a, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``d^2 = |mu1-mu2|^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2))``,
    with pytorch-fid's numerics: if ``sqrtm`` of the product is not finite
    (near-singular covariances), ``eps * I`` is added to both covariances; a
    small imaginary part from round-off is dropped, a large one raises
    ``ValueError``. The result is clamped at 0 (round-off can make an
    identical pair slightly negative).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("mean vectors / covariances have different shapes")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products are handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            log.warning("Fréchet distance: singular product; adding %g to the covariance diagonals", eps)
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    d = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(d, 0.0)


def sifid_per_image(real: torch.Tensor, fakes: ImageBatch, extractor: InceptionFeatures) -> list[float]:
    """SIFID of each fake against the one real image.

    Args:
        real: ``[3,H,W]`` or ``[1,3,H,W]``, float in [0,1].
        fakes: ``[N,3,H',W']`` or a sequence of ``[3,h,w]`` images in [0,1]
            (sizes may differ from the real image and from each other).
        extractor: an :class:`InceptionFeatures` (its ``is_random`` flag is
            the caller's business; see ``metrics.assert_reportable``).

    Returns:
        N floats (lower is better).
    """
    mu_r, s_r = gaussian_stats(extractor(as_image(real, "real")))
    out = []
    for fake in as_image_list(fakes, "fakes"):
        mu_f, s_f = gaussian_stats(extractor(fake))
        out.append(frechet_distance(mu_r, s_r, mu_f, s_f))
    return out


def sifid(real: torch.Tensor, fakes: ImageBatch, extractor: InceptionFeatures) -> float:
    """Mean SIFID over the fakes (shapes as in :func:`sifid_per_image`)."""
    values = sifid_per_image(real, fakes, extractor)
    return float(np.mean(values))
