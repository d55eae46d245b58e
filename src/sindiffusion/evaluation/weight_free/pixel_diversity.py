"""``pixel_diversity``: SinGAN's per-pixel std over samples / std of the real image (needs 2 samples)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...config import EvaluateConfig
from ..patches import pixel_diversity
from ..registry import Metric, register


@register
class PixelDiversity(Metric):
    name = "pixel_diversity"
    title = "pixel diversity"
    help = "per-pixel std over the samples / std of the training image (SinGAN); ↑"
    rank = 50
    min_samples = 2

    def compute(
        self, real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig, nets: Mapping[str, nn.Module]
    ) -> dict[str, float]:
        return {self.name: pixel_diversity(real, fakes)}
