"""``patch_swd``: multi-scale sliced Wasserstein distance between real and generated patches."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...config import EvaluateConfig
from ..patches import patch_swd
from ..registry import Metric, register


@register
class PatchSWD(Metric):
    name = "patch_swd"
    title = "patch SWD"
    help = "multi-scale sliced Wasserstein distance between real and generated patches (fidelity); ↓"
    rank = 30

    def compute(
        self, real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig, nets: Mapping[str, nn.Module]
    ) -> dict[str, float]:
        return {self.name: patch_swd(real, fakes, patch_size=cfg.patch_size, seed=cfg.swd_seed)}
