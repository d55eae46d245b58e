"""Helpers shared by the evaluation tests (image loading, synthetic images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def load_rgb(path: Path) -> torch.Tensor:
    """Image file -> ``[1,3,H,W]`` float32 in [0,1] (alpha dropped)."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).contiguous()


def smooth_image(seed: int, size: tuple[int, int] = (48, 64)) -> torch.Tensor:
    """A seeded, smooth synthetic RGB image ``[1,3,H,W]`` in [0,1] (upsampled noise)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, size[0] // 8, size[1] // 8, generator=g)
    img = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return (img + 0.05 * torch.rand(1, 3, *size, generator=g)).clamp(0, 1)
