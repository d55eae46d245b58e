"""``coverage``: the share of the training image's patches that each sample contains."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...config import EvaluateConfig
from ..registry import Metric, register
from ..structure import coverage


@register
class Coverage(Metric):
    name = "coverage"
    title = "coverage"
    help = (
        "fraction of training patches (every `evaluate.copy_stride` px) with a sample patch closer than "
        "`evaluate.coverage_threshold` (mean over samples): dropped or stretched content lowers it, "
        "copying raises it to 1 (read with `copy_fraction`); ↑"
    )
    rank = 64

    def compute(
        self, real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig, nets: Mapping[str, nn.Module]
    ) -> dict[str, float]:
        return {
            self.name: coverage(
                real, fakes, patch_size=cfg.patch_size, stride=cfg.copy_stride, threshold=cfg.coverage_threshold
            )
        }
