"""``copy_score``: how many generated patches are near-exact copies of the training image."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...config import EvaluateConfig
from ..patches import copy_score
from ..registry import Metric, register


@register
class CopyScore(Metric):
    name = "copy_score"
    title = "copy score"
    help = (
        "RMS distance of generated patches to their nearest training patch (`copy_nn_dist` ↑) and "
        "the fraction under `evaluate.copy_threshold` (`copy_fraction` ↓): memorisation"
    )
    rank = 40

    def keys(self, cfg: EvaluateConfig) -> tuple[str, ...]:
        return ("copy_nn_dist", "copy_fraction")

    def compute(
        self, real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig, nets: Mapping[str, nn.Module]
    ) -> dict[str, float]:
        return copy_score(real, fakes, patch_size=cfg.patch_size, stride=cfg.copy_stride, threshold=cfg.copy_threshold)
