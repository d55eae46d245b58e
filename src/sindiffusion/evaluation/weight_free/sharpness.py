"""``sharpness``: fine detail of the samples relative to the training image (1 = as crisp)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...config import EvaluateConfig
from ..registry import Metric, MetricUnavailable, register
from ..structure import sharpness


@register
class Sharpness(Metric):
    name = "sharpness"
    title = "sharpness"
    help = (
        "median over samples of the mean absolute 4-neighbour Laplacian of the luma / the same of the training image: "
        "1 = as crisp, < 1 blurred, > 1 grainy; → 1"
    )
    rank = 60

    def compute(
        self, real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig, nets: Mapping[str, nn.Module]
    ) -> dict[str, float]:
        try:
            return {self.name: sharpness(real, fakes)}
        except ValueError as err:  # a constant training image has no detail to compare with
            raise MetricUnavailable(str(err)) from err
