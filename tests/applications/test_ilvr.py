"""ILVR conditioning (SinDiffusion eq. 7) with a tiny RANDOMLY initialised UNet.

The network is random, so "quality" is not tested: only that the low frequencies of the
result follow the reference, masks confine the change, and the helpers validate inputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sindiffusion.applications import (
    ILVRHook,
    LowPass,
    composite,
    ilvr_sample,
    ilvr_sdedit,
    sdedit_timestep,
    super_resolve,
)
from sindiffusion.diffusion import make_sampler, sample_loop
from tests.tiny import smooth_image

from .conftest import CountingModel


def _lp_distance(x: torch.Tensor, ref: torch.Tensor, factor: int) -> float:
    lp = LowPass(factor)
    return float((lp(x) - lp(ref)).abs().mean())


@pytest.mark.parametrize("sampler_name", ["ddim", "ddpm"])
def test_ilvr_low_frequencies_follow_reference(unet, diffusion, sampler_name):
    sampler = make_sampler(sampler_name, diffusion, 8)
    ref = smooth_image(7)
    free = sample_loop(unet, diffusion, sampler, (2, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    guided = sample_loop(
        unet, diffusion, sampler, (2, 3, 32, 32), hooks=[ILVRHook(ref, 4)], generator=torch.Generator().manual_seed(1)
    )
    d_free, d_guided = _lp_distance(free, ref, 4), _lp_distance(guided, ref, 4)
    assert d_guided < 0.1
    assert d_guided < 0.3 * d_free
    # ... while the high frequencies still come from the model: the two samples differ.
    assert (guided[0] - guided[1]).abs().mean() > 0.05


def test_stop_at_leaves_final_steps_free(unet, diffusion, ddim):
    """Conditioning only the noisy half gives a result further from the reference than full conditioning."""
    ref = smooth_image(8)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    full = sample_loop(unet, diffusion, ddim, (2, 3, 32, 32), hooks=[ILVRHook(ref, 4)], generator=g())
    half = sample_loop(unet, diffusion, ddim, (2, 3, 32, 32), hooks=[ILVRHook(ref, 4, stop_at=0.5)], generator=g())
    assert _lp_distance(full, ref, 4) < _lp_distance(half, ref, 4)
    assert ILVRHook(ref, 4, stop_at=0.5).stop_step(1000) == 500
    assert ILVRHook(ref, 4, stop_at=300).stop_step(1000) == 300


def test_sdedit_start_runs_fewer_steps_and_must_match_loop(unet, diffusion, ddim):
    ref = smooth_image(9)
    hook, t_start = ilvr_sdedit(ref, 4, ddim, strength=0.6)
    assert t_start in ddim.timesteps and t_start == sdedit_timestep(ddim, 0.6)
    model = CountingModel(unet)
    out = sample_loop(model, diffusion, ddim, (1, 3, 32, 32), hooks=[hook], t_start=t_start)
    assert model.calls == sum(1 for t in ddim.timesteps if t <= t_start)
    assert _lp_distance(out, ref, 4) < 0.1
    with pytest.raises(ValueError, match="pass t_start=.* to sample_loop"):
        sample_loop(unet, diffusion, ddim, (1, 3, 32, 32), hooks=[hook])
    with pytest.raises(ValueError, match="strength"):
        sdedit_timestep(ddim, 0.0)


def test_paint_to_image_shape_and_determinism(unet, diffusion, ddim):
    painting = smooth_image(10)
    a = ilvr_sample(
        unet, diffusion, ddim, painting, 8, strength=0.7, batch_size=2, generator=torch.Generator().manual_seed(5)
    )
    b = ilvr_sample(
        unet, diffusion, ddim, painting, 8, strength=0.7, batch_size=2, generator=torch.Generator().manual_seed(5)
    )
    assert a.shape == (2, 3, 32, 32) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1


@pytest.mark.parametrize("strength", [0.6, None])
def test_mask_confines_the_change(unet, diffusion, ddim, strength):
    reference = smooth_image(11, batch=2)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 10:26] = 1.0  # 1 = region to change (pasted object / edited region)
    out = ilvr_sample(
        unet, diffusion, ddim, reference, 2, strength=strength, mask=mask, generator=torch.Generator().manual_seed(0)
    )
    outside = mask.expand_as(reference) == 0
    assert torch.equal(out[outside], reference[outside])
    assert (out[~outside] - reference[~outside]).abs().mean() > 1e-3


def test_mask_hook_without_sdedit_and_composite(unet, diffusion, ddpm):
    reference = smooth_image(12)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :, 16:] = 1.0
    hook = ILVRHook(reference, 4, mask=mask)
    out = sample_loop(unet, diffusion, ddpm, (1, 3, 32, 32), hooks=[hook])
    assert torch.equal(out[..., :16], reference[..., :16])
    pasted = composite(torch.ones(1, 3, 32, 32), reference, mask)
    assert torch.equal(pasted[..., :16], reference[..., :16]) and bool((pasted[..., 16:] == 1).all())


def test_super_resolve_shape_and_consistency(unet, diffusion, ddim):
    low = smooth_image(13, height=8)
    sr = super_resolve(unet, diffusion, ddim, low, 4, batch_size=2, generator=torch.Generator().manual_seed(0))
    assert sr.shape == (2, 3, 32, 32)
    down = F.interpolate(sr, size=(8, 8), mode="bicubic", align_corners=False, antialias=True)
    free = sample_loop(unet, diffusion, ddim, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    down_free = F.interpolate(free, size=(8, 8), mode="bicubic", align_corners=False, antialias=True)
    err, err_free = float((down - low).abs().mean()), float((down_free - low).abs().mean())
    assert err < 0.12
    assert err < 0.3 * err_free
    with pytest.raises(ValueError, match="scale must be an integer >= 2"):
        super_resolve(unet, diffusion, ddim, low, 1)
    with pytest.raises(ValueError, match="too large"):
        super_resolve(unet, diffusion, ddim, smooth_image(0, height=2), 4)


def test_lowpass_behaviour_and_errors():
    x = smooth_image(14)
    assert torch.equal(LowPass(1)(x), x)
    const = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(LowPass(4)(const), const, atol=1e-5)
    lp = LowPass(4)
    assert lp(x).shape == x.shape and lp.down(x).shape == (1, 3, 8, 8)
    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert lp(noise).std() < 0.5 * noise.std()  # removes most white-noise energy
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="integer >= 1"):
            LowPass(bad)
    with pytest.raises(ValueError, match="too large for a 32x32 image"):
        LowPass(16)(x)
    with pytest.raises(ValueError, match="too large"):
        ILVRHook(x, 16)
    with pytest.raises(ValueError, match="stop_at"):
        ILVRHook(x, 4, stop_at=1.5)
