"""A tiny trained checkpoint in a throw-away project folder, for the manipulate tests.

``make_project(root)`` writes ``root/results/<image>/preprocess/image.png`` (a smooth random 32x32
image), trains a tiny UNet (8 channels) for 2 steps into ``root/results/<image>/train/model.pt``
and writes ``root/params.yaml`` whose manipulate section samples with 4 DDIM steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from sindiffusion.artifacts import sha256_file
from sindiffusion.checkpoint import save_checkpoint
from sindiffusion.config import DiffusionConfig, TrainConfig
from sindiffusion.data.io import save_image
from sindiffusion.models import UNetConfig
from sindiffusion.training import Trainer

TINY_UNET = dict(base_channels=8, channel_mult=[1, 2], encoder_blocks=1, decoder_blocks=2, groups=4)


def smooth(seed: int, height: int = 32, width: int = 32) -> torch.Tensor:
    """A smooth random image ``[3, H, W]`` in [-0.9, 0.9]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((1, 3, 4, 4), generator=g) * 1.8 - 0.9
    return torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)[0]


def make_checkpoint(root: Path, image: str, seed: int = 0, size: tuple[int, int] = (32, 32),
                    **unet_overrides: Any) -> Path:
    processed = root / "results" / image / "preprocess" / "image.png"
    save_image(smooth(seed, *size), processed)
    from sindiffusion.data.io import image_to_tensor, load_image

    x = image_to_tensor(load_image(processed))
    info = {"name": image, "sha256": sha256_file(processed), "size": list(x.shape[1:]), "path": str(processed)}
    cfg = {**TINY_UNET, **unet_overrides}
    unet = UNetConfig(**{**cfg, "channel_mult": tuple(cfg["channel_mult"])})
    train = TrainConfig(steps=2, batch_size=2, scale_min=1.0, scale_max=1.0, device="cpu", log_every=1, save_every=100)
    trainer = Trainer(x, unet, DiffusionConfig(timesteps=100), train, info, torch.device("cpu"))
    trainer.run(2, progress=False)
    path = root / "results" / image / "train" / "model.pt"
    save_checkpoint(path, trainer.state_dict())
    return path


def write_params(root: Path, edits: dict[str, Any], **manipulate: Any) -> Path:
    cfg = {
        "data": {"images_dir": "data/images", "results_dir": str(root / "results")},
        "tracking": {"enabled": False},
        "manipulate": {"sampler": "ddim", "steps": 4, "eta": 1.0, "seed": 0, "num": 1, "batch_size": 2,
                       "device": "cpu", **manipulate, "edits": edits},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
