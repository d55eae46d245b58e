"""LPIPS diversity: mean LPIPS (AlexNet) over all unordered pairs of samples.

``diversity = 2 / (N (N-1)) * sum_{i<j} LPIPS(x_i, x_j)`` (SinDiffusion, eq. 9;
the paper uses N = 10 samples per training image). Higher is more diverse.

Network: ``lpips.LPIPS(net='alex', version='0.1')``: torchvision's ImageNet
AlexNet features + the LPIPS linear calibration layers, which ship inside the
``lpips`` wheel. The AlexNet backbone is NOT downloaded here: it is read from
``alexnet-owt-7be5be79.pth`` found by :func:`find_weights` and copied into the
lpips slices (``features.N.*`` -> ``sliceK.N.*``, lpips keeps torchvision's
layer indices).

Normalisation: samples are float RGB in [0,1] and are mapped to [-1,1] with
``2x - 1`` (``lpips``' ``normalize=True``); LPIPS' own scaling layer then
applies its ImageNet shift/scale.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import warnings
from pathlib import Path

import torch

from ._frozen import FrozenNet
from ._images import ImageBatch, as_image_list
from .weights import find_weights

__all__ = ["LPIPSAlex", "lpips_diversity", "pairwise_lpips"]

# lpips.pretrained_networks.alexnet: slice k holds these torchvision feature indices.
_ALEX_SLICES = {1: range(0, 2), 2: range(2, 5), 3: range(5, 8), 4: range(8, 10), 5: range(10, 12)}


def _alexnet_features_to_lpips(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision AlexNet ``features.N.{weight,bias}`` -> lpips ``sliceK.N.{weight,bias}``."""
    slice_of = {i: k for k, idx in _ALEX_SLICES.items() for i in idx}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
        if m:
            n = int(m.group(1))
            out[f"slice{slice_of[n]}.{n}.{m.group(2)}"] = value
    return out


class LPIPSAlex(FrozenNet):
    """LPIPS with an AlexNet backbone, loaded without any download.

    Args:
        weights_dir: where to look for ``alexnet-owt-7be5be79.pth`` (default:
            the torch hub cache); see :func:`find_weights`.
        random_init: keep a randomly initialised AlexNet backbone (the linear
            layers still come from the wheel). Only for tests: marked
            ``is_random = True``; its numbers are refused by the metric writers.
        device: where to run.

    Raises:
        MissingWeightsError: pretrained backbone requested but not on disk.
    """

    def __init__(
        self,
        *,
        weights_dir: str | Path | None = None,
        random_init: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        # why: lpips is heavy and only the deep LPIPS metric needs it
        import lpips

        self.is_random = bool(random_init)
        self.weights_file: Path | None = None
        path = None if random_init else find_weights("alexnet", weights_dir)  # fail before building
        # lpips prints on construction and calls torchvision's deprecated `pretrained=`
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.model.net.load_state_dict(_alexnet_features_to_lpips(state), strict=True)
            self.weights_file = path
        self.requires_grad_(False)
        self.eval()
        self.to(device)

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS between ``a`` and ``b``: both ``[B,3,H,W]`` in [0,1] -> ``[B]``."""
        d = self.model(a.to(self.device, torch.float32), b.to(self.device, torch.float32), normalize=True)
        return d.reshape(-1)


def pairwise_lpips(samples: ImageBatch, model: LPIPSAlex, batch_size: int = 16) -> torch.Tensor:
    """LPIPS of every unordered pair ``i < j``.

    Args:
        samples: ``[N,3,H,W]`` in [0,1], or a sequence of images where each
            pair compared has one size.
        model: an :class:`LPIPSAlex`.
        batch_size: pairs per forward pass.

    Returns:
        ``[N(N-1)/2]`` float tensor on the CPU, pairs in ``itertools.combinations`` order.
    """
    items = as_image_list(samples, "samples")
    pairs = list(itertools.combinations(range(len(items)), 2))
    out: list[torch.Tensor] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        same = len({tuple(items[i].shape) for p in chunk for i in p}) == 1
        if same:
            a = torch.cat([items[i] for i, _ in chunk])
            b = torch.cat([items[j] for _, j in chunk])
            out.append(model(a, b).cpu())
        else:
            out.extend(model(items[i], items[j]).cpu() for i, j in chunk)
    return torch.cat(out) if out else torch.zeros(0)


def lpips_diversity(samples: ImageBatch, model: LPIPSAlex, batch_size: int = 16) -> float:
    """Mean pairwise LPIPS of ``N >= 2`` samples (``[N,3,H,W]`` in [0,1]); higher is more diverse."""
    d = pairwise_lpips(samples, model, batch_size)
    if d.numel() == 0:
        raise ValueError("LPIPS diversity needs at least 2 samples")
    return float(d.mean())
