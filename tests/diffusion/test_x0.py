"""The x0 treatments of the sampling loop: none, clamp, Imagen dynamic thresholding, low-noise clamp."""

import pytest
import torch

from sindiffusion.diffusion import GaussianDiffusion, X0Clip, make_betas
from sindiffusion.diffusion.x0 import as_x0_clip
from sindiffusion.validation import FieldError

T = 100


@pytest.fixture
def diffusion():
    return GaussianDiffusion(make_betas("linear", T, 1e-4, 0.02))


def test_bool_options_are_the_historical_behaviour():
    assert X0Clip.from_option(False).mode == "none" and X0Clip.from_option(True).mode == "clamp"
    assert as_x0_clip(True) == X0Clip("clamp") and as_x0_clip(False) == X0Clip("none")
    x = torch.linspace(-3, 3, 24).reshape(1, 2, 3, 4)
    assert torch.equal(X0Clip("none").apply(x, 50, T), x)
    assert torch.equal(X0Clip("clamp").apply(x, 50, T), x.clamp(-1, 1))


def test_dynamic_thresholding_rescales_by_the_per_sample_percentile():
    torch.manual_seed(0)
    inside = torch.rand(1, 3, 8, 8) * 1.8 - 0.9  # |x| < 1: s = max(1, q) = 1, a plain clamp = identity
    outside = torch.randn(1, 3, 8, 8) * 3.0  # s > 1: clamp to [-s, s] and divide by s
    x = torch.cat([inside, outside])
    out = X0Clip("dynamic", percentile=0.9).apply(x, 99, T)
    assert torch.allclose(out[0], inside[0])
    s = torch.quantile(outside.abs().flatten(), 0.9, interpolation="higher")
    assert torch.allclose(out[1], outside[0].clamp(-s, s) / s, atol=1e-5)
    assert out.abs().max() <= 1.0 + 1e-6


def test_low_noise_clamps_only_below_the_fraction_of_T():
    clip = X0Clip("low_noise", low_noise=0.3)
    x = torch.full((1, 1, 2, 2), 2.0)
    assert clip.active(29, T) and not clip.active(30, T)
    assert torch.equal(clip.apply(x, 50, T), x)
    assert clip.apply(x, 10, T).max() == 1.0


@pytest.mark.parametrize("mode", ["dynamic", "low_noise", "clamp"])
def test_output_keeps_eps_consistent_with_the_treated_x0(diffusion, mode):
    torch.manual_seed(0)
    x_t = torch.randn(2, 3, 4, 4) * 3
    for t in (5, 90):
        out = diffusion.output_from_eps(x_t, t, torch.randn_like(x_t), clip_x0=X0Clip(mode))
        rebuilt = (x_t - (1 - diffusion.abar(t)) ** 0.5 * out.eps) / diffusion.abar(t) ** 0.5
        assert torch.allclose(rebuilt, out.pred_x0, atol=1e-4)
        assert not torch.equal(out.pred_x0_raw, out.pred_x0) or (mode == "low_noise" and t == 90)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"clip_x0": "always"}, "clip_x0"),
        ({"clip_x0": 1}, "clip_x0"),
        ({"percentile": 0.0}, "percentile"),
        ({"low_noise": 1.5}, "low_noise"),
    ],
)
def test_bad_options_name_the_key(kwargs, key):
    args = {"clip_x0": "dynamic", "percentile": 0.995, "low_noise": 0.2, **kwargs}
    with pytest.raises(FieldError) as err:
        X0Clip.from_option(args["clip_x0"], args["percentile"], args["low_noise"])
    assert err.value.key == key
