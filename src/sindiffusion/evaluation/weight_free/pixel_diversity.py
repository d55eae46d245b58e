"""``pixel_diversity``: SinGAN's per-pixel std over samples / std of the real image (needs 2 samples)."""

from __future__ import annotations

from typing import Any

import torch

from ...config import EvaluateConfig
from ..patches import pixel_diversity
from ..registry import METRICS, MetricUnavailable


@METRICS.register("pixel_diversity")
def pixel_diversity_metric(real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig) -> dict[str, Any]:
    if fakes.shape[0] < 2:
        raise MetricUnavailable("needs at least 2 samples")
    return {"pixel_diversity": pixel_diversity(real, fakes)}
