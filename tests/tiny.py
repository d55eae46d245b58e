"""The one set of tiny test objects: a tiny UNet config, a smooth test image and a tiny trained checkpoint.

``tests/conftest.py`` exposes them as fixtures (``tiny_unet``, ``smooth``, ``tiny_checkpoint``); module-level
uses (``parametrize`` lists, helpers) import them from here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from sindiffusion.models import UNetConfig

#: 8 channels, 2 levels: ~90 k parameters, receptive field 45 px; sizes must be multiples of 2.
TINY_UNET = UNetConfig(base_channels=8, channel_mult=(1, 2), encoder_blocks=1, decoder_blocks=2, groups=4)

#: :data:`TINY_UNET` as the ``model`` section of a params.yaml (plain YAML types).
TINY_MODEL_SECTION: dict = {
    "preset": "custom",
    **{
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(TINY_UNET).items()
        if k != "in_channels"
    },
}  # RGB: not a params key


def smooth_image(seed: int, height: int = 32, width: int | None = None, batch: int = 1) -> torch.Tensor:
    """A smooth random image ``[batch, 3, height, width]`` in [-0.9, 0.9] (4x4 noise, bilinear upsampled)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((batch, 3, 4, 4), generator=g) * 1.8 - 0.9
    img = torch.nn.functional.interpolate(low, size=(height, width or height), mode="bilinear", align_corners=False)
    return img.clamp(-0.9, 0.9)


def make_checkpoint(
    root: Path,
    image: str,
    seed: int = 0,
    size: tuple[int, int] = (32, 32),
    train: dict | None = None,
    **unet_overrides,
) -> Path:
    """``root/results/<image>/train/model.pt``: :data:`TINY_UNET` trained 2 steps on :func:`smooth_image`
    (written as ``root/results/<image>/preprocess/image.png``); ``train`` overrides keys of the ``train`` section."""
    from sindiffusion.artifacts import sha256_file
    from sindiffusion.checkpoint import save_checkpoint
    from sindiffusion.config import DiffusionConfig, TrainConfig
    from sindiffusion.data.io import image_to_tensor, load_image, save_image
    from sindiffusion.models.unet_kind import UNetOptions
    from sindiffusion.training import Trainer

    processed = root / "results" / image / "preprocess" / "image.png"
    save_image(smooth_image(seed, *size)[0], processed)
    x = image_to_tensor(load_image(processed))
    info = {"name": image, "sha256": sha256_file(processed), "size": list(x.shape[1:]), "path": str(processed)}
    unet = dataclasses.replace(TINY_UNET, **unet_overrides)
    section = dict(steps=2, batch_size=2, scale_min=1.0, scale_max=1.0, device="cpu", log_every=1, save_every=100)
    cfg = TrainConfig(**{**section, **(train or {})})
    trainer = Trainer(x, UNetOptions.of(unet), DiffusionConfig(timesteps=100), cfg, info, torch.device("cpu"))
    trainer.run(2, progress=False)
    path = root / "results" / image / "train" / "model.pt"
    save_checkpoint(path, trainer.state_dict())
    return path
