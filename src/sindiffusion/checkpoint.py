"""Self-describing checkpoints.

A checkpoint is a plain dict of tensors and primitives (loadable with
``torch.load(weights_only=True)``)::

    format          "sindiffusion-checkpoint"
    version         1
    step            int, optimisation steps done
    config          {"model": ..., "diffusion": ..., "train": ...} as trained; ``model.kind`` names the
                    model kind (absent = ``unet``: every checkpoint written before kinds existed)
    image           {"name", "sha256", "size": [H, W], "path"}: the training image
    model, ema      state dicts (raw and EMA weights; a training-free ``patch`` model stores its
                    training image ``image: [1, 3, H, W]`` in [-1, 1] in both, sharing storage)
    optimizer       AdamW state dict
    rng             {"torch": ByteTensor, "train_generator": ByteTensor, "cuda": [ByteTensor] }

Writes are atomic (temp file in the same folder + ``os.replace``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from .data.io import atomic_write
from .diffusion.gaussian import GaussianDiffusion
from .models.kinds import kind_of_checkpoint

FORMAT = "sindiffusion-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """An unreadable or incompatible checkpoint; the message names the file."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (without ``format``/``version``; they are added) atomically."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint with ``weights_only=True`` (no arbitrary code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt zip, truncated file, pickle refused ...
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a sindiffusion checkpoint (missing format={FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')} is not supported (expected {VERSION})")
    for key in ("step", "config", "image", "model", "ema"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], use_ema: bool = True) -> torch.nn.Module:
    """Rebuild the model described by the checkpoint (any registered kind) and load its (EMA) weights."""
    kind = kind_of_checkpoint(ckpt)
    return kind.from_checkpoint(ckpt, ckpt["ema" if use_ema else "model"], diffusion_from_checkpoint(ckpt)).eval()


def diffusion_from_checkpoint(ckpt: dict[str, Any]) -> GaussianDiffusion:
    d = ckpt["config"]["diffusion"]
    return GaussianDiffusion.from_config(d["schedule"], d["timesteps"], d["beta_start"], d["beta_end"], d["variance"])
