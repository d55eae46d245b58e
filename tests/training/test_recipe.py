"""Training-recipe options: LR warm-up/cosine, EMA 'auto', min-SNR weighting, v-prediction, precision."""

import math

import pytest
import torch

from sindiffusion.config import DiffusionConfig, TrainConfig
from sindiffusion.diffusion import GaussianDiffusion, make_betas
from sindiffusion.models.unet_kind import UNetOptions
from sindiffusion.runtime import autocast_dtype, describe
from sindiffusion.training import Trainer
from sindiffusion.training.ema import auto_decay
from sindiffusion.training.lr import lr_factor
from tests.tiny import (
    TINY_UNET,
    one_torch_thread,  # noqa: F401
)


def test_lr_warmup_then_cosine_to_zero():
    f = [lr_factor(s, 110, warmup=10, schedule="cosine") for s in range(120)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert (
        f[60] == pytest.approx(0.5)
        and f[110] == pytest.approx(0.0, abs=1e-12)
        and f[119] == pytest.approx(0.0, abs=1e-12)
    )
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert [lr_factor(s, 100) for s in (0, 50, 500)] == [1.0, 1.0, 1.0]


def test_auto_ema_half_life_is_a_tenth_of_the_steps():
    d = auto_decay(1200, 0.1)
    assert d**120 == pytest.approx(0.5) and auto_decay(1, 0.1) == 0.5


@pytest.mark.parametrize("param", ["eps", "v"])
def test_target_and_eps_conversion_round_trip(param):
    d = GaussianDiffusion(make_betas("linear", 100), parameterization=param)
    torch.manual_seed(0)
    x0, noise, t = torch.rand(3, 3, 4, 4) * 2 - 1, torch.randn(3, 3, 4, 4), torch.tensor([0, 50, 99])
    x_t = d.q_sample(x0, t, noise)
    assert torch.allclose(d.eps_from_output(d.target(x0, t, noise), x_t, t), noise, atol=1e-5)
    assert d.training_loss(lambda x, tt: d.target(x0, tt, noise), x0, t, noise).item() == pytest.approx(0.0, abs=1e-10)


def test_min_snr_weights():
    d = GaussianDiffusion(make_betas("linear", 1000))
    t = torch.tensor([0, 200, 999])
    snr = d.snr(t)
    w = d.loss_weights(t, "min_snr", 5.0)
    expected = torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / snr
    assert torch.allclose(w, expected.float()) and w[0] < 0.01 and w[2] == pytest.approx(1.0)
    v = GaussianDiffusion(make_betas("linear", 1000), parameterization="v").loss_weights(t, "min_snr", 5.0)
    assert torch.allclose(v, (torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / (snr + 1)).float())
    assert torch.equal(d.loss_weights(t), torch.ones(3))


def test_precision_resolution(monkeypatch):
    from sindiffusion import runtime as precision

    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    assert autocast_dtype("auto", cpu) is torch.bfloat16 and "avx512_bf16" in describe("auto", cpu)
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ())
    assert autocast_dtype("auto", cpu) is None and describe("auto", cpu).startswith("fp32")
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16


@pytest.mark.parametrize("precision,param", [("bf16", "v"), ("fp32", "eps")])
def test_trainer_runs_the_recipe_options(precision, param):
    image = torch.rand(3, 16, 16) * 2 - 1
    cfg = TrainConfig(
        steps=4,
        batch_size=2,
        lr=1e-3,
        lr_warmup=2,
        lr_schedule="cosine",
        loss_weighting="min_snr",
        ema_decay="auto",
        precision=precision,
        device="cpu",
        scale_min=1.0,
        scale_max=1.0,
    )
    trainer = Trainer(
        image, UNetOptions.of(TINY_UNET), DiffusionConfig(timesteps=50, parameterization=param), cfg, {"name": "x"}
    )
    assert trainer.ema_decay == pytest.approx(0.5 ** (1 / 1.0))  # 10 % of 4 steps < 1 update: clamped to 1
    assert (trainer.autocast_dtype is torch.bfloat16) == (precision == "bf16")
    lrs = []
    for _ in range(4):
        loss = trainer.train_step()
        assert math.isfinite(loss)
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-3, 5e-4], abs=1e-12)  # warm-up 2, then cosine over 2 steps
    assert trainer.state_dict()["config"]["diffusion"]["parameterization"] == param


def _drawn_timesteps(t_max: float, steps: int = 12) -> list[int]:
    """Every t a tiny trainer with ``train.t_max`` draws in ``steps`` steps of batch 4 (T = 100)."""
    image = torch.rand(3, 16, 16) * 2 - 1
    cfg = TrainConfig(steps=steps, batch_size=4, t_max=t_max, device="cpu", scale_min=1.0, scale_max=1.0)
    trainer = Trainer(image, UNetOptions.of(TINY_UNET), DiffusionConfig(timesteps=100), cfg, {"name": "x"})
    drawn: list[int] = []
    loss = trainer.diffusion.training_loss
    trainer.diffusion.training_loss = lambda net, x0, t, *a: drawn.extend(t.tolist()) or loss(net, x0, t, *a)
    for _ in range(steps):
        trainer.train_step()
    return drawn


def test_t_max_trains_only_the_low_noise_levels():
    """train.t_max = 0.3 of T = 100: every t is <= round(0.3 * 99) = 30, and the low levels are all
    reachable; t_max = 1 (the default) draws over the whole process as before."""
    low = _drawn_timesteps(0.3)
    assert max(low) <= 30 and min(low) >= 0 and len(set(low)) > 15
    full = _drawn_timesteps(1.0)
    assert max(full) > 60  # 48 draws over 0..99
    assert TrainConfig().t_max == 1.0
