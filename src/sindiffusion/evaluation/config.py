"""The ``evaluate`` section of ``params.yaml`` (read by ``sindiffusion evaluate`` and the benchmark).

Kept free of heavy imports: :mod:`sindiffusion.config` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class EvaluateConfig:
    """How samples are scored (DESIGN.md §3).

    Deep metrics (SIFID, LPIPS diversity) need pretrained torchvision weights; when they are
    missing the metric is written as null with the reason, never computed from random weights.
    Checkpoints are always checked against the SHA-256 prefix in their torchvision file name, so a
    file with the right name but other contents (e.g. random values) is treated as missing.
    """

    sifid_layers: tuple[str, ...] = ("pool1",)
    """``pool1`` (64 ch, before Inception's first max-pool: SinGAN's released code) and/or
    ``pool2`` (192 ch, before the second pool: SinGAN's paper). Metric keys: ``sifid_<layer>``."""
    deep: bool = True
    """Compute SIFID and LPIPS diversity when their weights are on disk."""
    weights_dir: Optional[str] = None
    """Where the pretrained checkpoints are; null = the torch hub cache ($TORCH_HOME/hub/checkpoints)."""
    device: str = "auto"
    """``auto`` = CUDA when available, else CPU."""
    patch_size: int = 7
    """Patch side of the copy score and the patch SWD."""
    copy_stride: int = 4
    """Stride between the generated patches matched by the copy score."""
    copy_threshold: float = 0.02
    """Per-pixel RMS distance under which a generated patch counts as a copy (~5/255)."""
    swd_seed: int = 0
    """Seed of the patch SWD's random projections (same directions for every image)."""
