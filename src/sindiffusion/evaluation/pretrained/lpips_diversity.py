"""``lpips_diversity``: mean LPIPS distance over all pairs of samples (higher is more diverse)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...config import EvaluateConfig
from ..registry import Metric, NetworkBuilder, register

# The network modules are imported inside the methods: they pull in torchvision/scipy/lpips, which
# listing the metric keys (benchmark columns, docs, CLI) must not pay for.


@register
class LPIPSDiversity(Metric):
    name = "lpips_diversity"
    title = "LPIPS diversity"
    help = "mean LPIPS (AlexNet) over all pairs of samples (SinDiffusion paper eq. 9); ↑"
    rank = 20
    weights = ("alexnet",)
    min_samples = 2
    notes = {
        "lpips_normalisation": "mean LPIPS(alex, v0.1) over all N(N-1)/2 unordered pairs; inputs [0,1] mapped to [-1,1]"
    }

    def networks(self, cfg: EvaluateConfig) -> dict[str, NetworkBuilder]:
        # why: a metric plug-in: its network code loads only when the deep metric runs
        from ..diversity import LPIPSAlex

        return {self.name: LPIPSAlex}

    def compute(
        self, real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig, nets: Mapping[str, nn.Module]
    ) -> dict[str, float]:
        # why: a metric plug-in: its network code loads only when the deep metric runs
        from ..diversity import lpips_diversity

        return {key: lpips_diversity(fakes, net) for key, net in nets.items()}  # type: ignore[arg-type]
