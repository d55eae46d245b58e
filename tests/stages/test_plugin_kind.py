"""A model kind added by one module and nothing else: this module registers a tiny trainable kind (a
2-layer conv net) and it trains and samples through the real preprocess, train and sample stages.

The trainer and the train stage know no network: the module they optimise, the checkpoint's
``config.model``, the size multiple of the random rescale and the channels-last choice all come from
the kind. The kind is registered for this module's tests only (a module-scoped fixture), so the
registry, the config schema and the CLI's choices are as shipped for every other test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sindiffusion.checkpoint import load_checkpoint, model_from_checkpoint
from sindiffusion.cli import main
from sindiffusion.config import DiffusionConfig, TrainConfig, load_params
from sindiffusion.diffusion.gaussian import GaussianDiffusion
from sindiffusion.models.kinds import MODEL_KINDS, Geometry, ModelKind, register
from sindiffusion.training import Trainer
from sindiffusion.validation import opt
from tests.tiny import one_torch_thread, tiny_project, write_params_file  # noqa: F401


# ------------------------------------------------------------------ the plug-in: one kind, one module
@dataclass(frozen=True)
class TinyConvOptions:
    """``model.kind: tinyconv``: two 3x3 convolutions with ``channels`` hidden channels."""

    kind: Literal["tinyconv"] = "tinyconv"
    channels: int = opt(8, ge=1)


class TinyConv(nn.Module):
    """``(x_t, t) -> eps``: conv(3 + 1 -> C) -> SiLU -> conv(C -> 3); t enters as a constant channel."""

    def __init__(self, channels: int, timesteps: int) -> None:
        super().__init__()
        self.timesteps = timesteps
        self.inp = nn.Conv2d(4, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        level = (t.float() / self.timesteps).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])
        return self.out(nn.functional.silu(self.inp(torch.cat([x, level.to(x.dtype)], 1))))


class TinyConvKind(ModelKind):
    name = "tinyconv"
    help = "test-only: a 2-layer conv net, trained"
    options = TinyConvOptions
    trainable = True

    def geometry(self, options: TinyConvOptions) -> Geometry:
        return Geometry(size_multiple=4, min_side=8)  # 4: to see the trainer's rescale keep the kind's multiple

    def receptive_field(self, options: TinyConvOptions, size: tuple[int, int]) -> int:
        return 5

    def build(self, options: TinyConvOptions, diffusion: GaussianDiffusion, image: Any) -> nn.Module:
        return TinyConv(options.channels, diffusion.num_timesteps)

    def channels_last(self, options: TinyConvOptions) -> bool:
        return False


@pytest.fixture(scope="module", autouse=True)
def tinyconv_registered():
    register(TinyConvKind)
    yield MODEL_KINDS.get("tinyconv")
    MODEL_KINDS.unregister("tinyconv")


# ------------------------------------------------------------------ the proof
MODEL = {"kind": "tinyconv", "channels": 6}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """preprocess -> train (6 steps) -> sample (2 samples, 4 DDIM steps) through the CLI, in-process."""
    root = tmp_path_factory.mktemp("plugin-kind")
    params = tiny_project(root, replace={"model": MODEL, "tracking": {"enabled": False}}, sample={"steps": 4}).params
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for stage in ("preprocess", "train", "sample"):
            assert main([stage, "--image", "img", "--params", str(params), "--no-progress"]) == 0, stage
    return root


def test_the_plugin_kind_trains_and_samples_through_the_stages(trained: Path):
    res = trained / "results" / "img"
    ckpt = load_checkpoint(res / "train" / "model.pt")
    assert ckpt["config"]["model"] == MODEL  # the kind's stored_config, nothing of a UNet
    assert ckpt["step"] == 6 and set(ckpt["model"]) == {"inp.weight", "inp.bias", "out.weight", "out.bias"}
    assert ckpt["model"]["inp.weight"].shape == (6, 4, 3, 3)
    assert not torch.equal(ckpt["model"]["out.weight"], ckpt["ema"]["out.weight"])  # trained, EMA kept apart
    rows = (res / "train" / "loss.csv").read_text().strip().splitlines()
    assert rows[0] == "step,loss,it_per_s" and len(rows) == 7
    metrics = json.loads((res / "train" / "metrics.json").read_text())
    assert metrics["steps"] == 6 and np.isfinite(metrics["final_loss"])
    samples = sorted((res / "samples").glob("sample_*.png"))
    assert len(samples) == 2 and np.asarray(Image.open(samples[0])).shape == (40, 48, 3)
    model = model_from_checkpoint(ckpt)  # the ModelKind default: build + load_state_dict
    assert isinstance(model, TinyConv) and not model.training


def test_the_trainer_takes_everything_from_the_kind(tmp_path: Path):
    params = write_params_file(tmp_path / "params.yaml", {"model": MODEL})
    options = load_params(params).section("model")  # the config engine knows the registered kind
    assert isinstance(options, TinyConvOptions) and options.channels == 6
    cfg = TrainConfig(steps=2, batch_size=2, scale_min=0.6, scale_max=1.0, device="cpu", channels_last="auto")
    trainer = Trainer(torch.rand(3, 40, 48) * 2 - 1, options, DiffusionConfig(timesteps=50), cfg, {"name": "x"})
    assert isinstance(trainer.model, TinyConv) and trainer.size_multiple == 4 and not trainer.channels_last
    for _ in range(5):
        h, w = trainer.make_batch().shape[-2:]
        assert h % 4 == 0 and w % 4 == 0  # the rescale keeps the kind's size multiple
    assert trainer.config_dict()["model"] == MODEL


def test_a_training_free_kind_is_refused_by_the_trainer(tmp_path: Path):
    params = write_params_file(tmp_path / "params.yaml", {"model": {"kind": "patch"}})
    options = load_params(params).section("model")
    with pytest.raises(ValueError, match="training-free"):
        Trainer(torch.rand(3, 16, 16), options, DiffusionConfig(timesteps=50), TrainConfig(device="cpu"), {})
