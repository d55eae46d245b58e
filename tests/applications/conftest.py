"""Shared fixtures for the application tests: tiny *randomly initialised* networks.

Nothing here is trained or pretrained: the UNet and the CLIP model are random, so the tests
check the mechanics (exactness, determinism, gradients, shapes), not image quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
import torch
import torch.nn as nn

from sindiffusion.diffusion import GaussianDiffusion, make_sampler
from sindiffusion.models import UNet
from tests.tiny import TINY_UNET

TINY_CLIP = "sindiffusion-test-tiny-clip"


class CountingModel(nn.Module):
    """Wraps an eps-model and counts forward calls."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x, t)


def random_unet(seed: int = 0) -> UNet:
    """A tiny UNet whose zero-initialised convs are re-initialised, so its eps output is not 0."""
    torch.manual_seed(seed)
    model = UNet(TINY_UNET)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and not bool(m.weight.abs().sum() > 0):
            m.reset_parameters()
    return model.eval()


@pytest.fixture(autouse=True, scope="package")
def one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster, and much faster on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def unet() -> UNet:
    return random_unet()


@pytest.fixture(scope="session")
def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion.from_config("linear", 1000, 1e-4, 0.02)


@pytest.fixture
def ddim(diffusion: GaussianDiffusion):
    return make_sampler("ddim", diffusion, 8)


@pytest.fixture
def ddpm(diffusion: GaussianDiffusion):
    return make_sampler("ddpm", diffusion, 8)


@pytest.fixture(scope="session")
def tiny_clip_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Register a tiny, RANDOMLY initialised open_clip architecture (no weights exist for it)."""
    import open_clip

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    folder: Path = tmp_path_factory.mktemp("open_clip_cfg")
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    yield TINY_CLIP
