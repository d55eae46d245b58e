"""Tiny pipeline configurations shared by the stage, CLI and tracking tests (CPU, seconds)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.tiny import TINY_MODEL_SECTION

TINY_PARAMS: dict = {
    "data": {"images_dir": "data/images", "images": [], "results_dir": "results"},
    "preprocess": {"max_size": 48, "max_pixels": 100_000_000, "allow_large": False},
    "model": TINY_MODEL_SECTION,
    "diffusion": {"timesteps": 100},
    "train": {
        "steps": 6,
        "batch_size": 2,
        "lr": 0.002,
        "log_every": 1,
        "save_every": 100,
        "crop_size": None,
        "ema_decay": 0.9,
        "seed": 0,
        "device": "cpu",
    },
    "sample": {
        "num_samples": 2,
        "batch_size": 2,
        "sampler": "ddim",
        "steps": 5,
        "eta": 1.0,
        "seed": 0,
        "device": "cpu",
    },
    "tracking": {"enabled": True, "experiment": "sindiffusion-test", "tracking_uri": None},
}


def write_params(root: Path, name: str = "params.yaml", **sections: dict) -> Path:
    """``root/name`` with TINY_PARAMS, each given section's keys updated."""
    params = copy.deepcopy(TINY_PARAMS)
    for section, values in sections.items():
        params.setdefault(section, {}).update(values)
    path = Path(root) / name
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def make_image(path: Path, width: int = 48, height: int = 40, seed: int = 0, mode: str = "RGB") -> Path:
    """A small textured image (stripes + noise) at ``path``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 127 + 100 * np.sin(xx / 3.0 + seed)[..., None] * np.array([1.0, 0.5, -0.5])
    arr = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def project(root: Path, image: str = "img", **sections: dict) -> Path:
    """A tmp project: ``params.yaml`` + ``data/images/<image>.png``; returns the params file."""
    make_image(Path(root) / "data" / "images" / f"{image}.png")
    return write_params(root, **sections)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny convolutions on a shared 2-core machine: several intra-op threads only spin-wait
    (measured 50x slower under load). Import this fixture into a test module to use it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
