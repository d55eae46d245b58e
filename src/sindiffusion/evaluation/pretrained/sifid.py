"""``sifid``: Single-Image Fréchet Inception Distance per Inception layer (lower is more faithful)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
from torch import nn

from ...config import EvaluateConfig
from ..registry import Metric, NetworkBuilder, register

# The network modules are imported inside the methods: they pull in torchvision/scipy/lpips, which
# listing the metric keys (benchmark columns, docs, CLI) must not pay for.


@register
class SIFID(Metric):
    name = "sifid"
    title = "SIFID"
    help = "Fréchet distance of Inception features, one real vs each sample, averaged (SinGAN); ↓"
    rank = 10
    weights = ("inception_v3",)

    def keys(self, cfg: EvaluateConfig) -> tuple[str, ...]:
        # why: a metric plug-in: its network code loads only when the deep metric runs
        from ..sifid import sifid_metric_name

        return tuple(sifid_metric_name(layer) for layer in cfg.sifid_layers)

    def all_keys(self) -> tuple[str, ...]:
        # why: a metric plug-in: its network code loads only when the deep metric runs
        from ..sifid import SIFID_LAYERS

        return self.keys(EvaluateConfig(sifid_layers=tuple(SIFID_LAYERS)))  # type: ignore[arg-type]

    def networks(self, cfg: EvaluateConfig) -> dict[str, NetworkBuilder]:
        # why: a metric plug-in: its network code loads only when the deep metric runs
        from ..sifid import InceptionFeatures

        return {key: partial(InceptionFeatures, layer) for key, layer in zip(self.keys(cfg), cfg.sifid_layers)}

    def compute(
        self, real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig, nets: Mapping[str, nn.Module]
    ) -> dict[str, float]:
        # why: a metric plug-in: its network code loads only when the deep metric runs
        from ..sifid import sifid

        return {key: sifid(real, fakes, net) for key, net in nets.items()}  # type: ignore[arg-type]
