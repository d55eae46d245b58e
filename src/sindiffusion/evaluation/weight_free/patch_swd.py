"""``patch_swd``: multi-scale sliced Wasserstein distance between real and generated patches."""

from __future__ import annotations

from typing import Any

import torch

from ...config import EvaluateConfig
from ..patches import patch_swd
from ..registry import METRICS


@METRICS.register("patch_swd")
def patch_swd_metric(real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig) -> dict[str, Any]:
    return {"patch_swd": patch_swd(real, fakes, patch_size=cfg.patch_size, seed=cfg.swd_seed)}
