"""``copy_score``: how many generated patches are near-exact copies of the training image."""

from __future__ import annotations

from typing import Any

import torch

from ...config import EvaluateConfig
from ..patches import copy_score
from ..registry import METRICS


@METRICS.register("copy_score")
def copy_score_metric(real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig) -> dict[str, Any]:
    return copy_score(real, fakes, patch_size=cfg.patch_size, stride=cfg.copy_stride, threshold=cfg.copy_threshold)
