"""``write_params(root, edits)``: a params.yaml whose manipulate section samples with 4 DDIM steps.

The tiny checkpoint and the smooth image come from :mod:`tests.tiny` (re-exported here for the
manipulate tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from tests.tiny import make_checkpoint, smooth_image

__all__ = ["make_checkpoint", "smooth", "write_params"]


def smooth(seed: int, height: int = 32, width: int = 32) -> torch.Tensor:
    """One :func:`tests.tiny.smooth_image` as ``[3, H, W]``."""
    return smooth_image(seed, height, width)[0]


def write_params(root: Path, edits: dict[str, Any], **manipulate: Any) -> Path:
    cfg = {
        "data": {"images_dir": "data/images", "results_dir": str(root / "results")},
        "tracking": {"enabled": False},
        "manipulate": {
            "sampler": "ddim",
            "steps": 4,
            "eta": 1.0,
            "seed": 0,
            "num": 1,
            "batch_size": 2,
            "device": "cpu",
            **manipulate,
            "edits": edits,
        },
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
