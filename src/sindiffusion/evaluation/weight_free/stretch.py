"""``stretch``: horizontal vs vertical edge energy of the samples relative to the training image."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...config import EvaluateConfig
from ..registry import Metric, MetricUnavailable, register
from ..structure import stretch


@register
class Stretch(Metric):
    name = "stretch"
    title = "stretch"
    help = (
        "median over samples of (mean absolute Sobel d/dx ÷ mean absolute Sobel d/dy) / the same of the training "
        "image: 1 = shapes kept, < 1 stretched sideways, > 1 stretched tall; → 1"
    )
    rank = 62

    def compute(
        self, real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig, nets: Mapping[str, nn.Module]
    ) -> dict[str, float]:
        try:
            return {self.name: stretch(real, fakes)}
        except ValueError as err:
            raise MetricUnavailable(str(err)) from err
