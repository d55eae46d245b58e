"""Outpainting / inpainting (SinDiffusion eq. 6) with a tiny RANDOMLY initialised UNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sindiffusion.applications import (
    KnownRegionHook,
    fill_masked_region,
    load_mask,
    outpaint_canvas,
    outpaint_to_size,
    validate_mask,
)
from sindiffusion.diffusion import make_sampler, sample_loop
from tests.tiny import smooth_image

from .conftest import CountingModel


@pytest.mark.parametrize("sampler_name", ["ddim", "ddpm"])
def test_outpainting_keeps_known_region_exactly(unet, diffusion, sampler_name):
    image = smooth_image(1, height=32)[..., 8:24]  # [1, 3, 32, 16]
    canvas, mask = outpaint_canvas(image, left=8, right=8)
    assert canvas.shape == (1, 3, 32, 32) and mask.shape == (1, 1, 32, 32)
    assert mask[..., 8:24].sum() == 0 and mask[..., :8].min() == 1 and mask[..., 24:].min() == 1
    sampler = make_sampler(sampler_name, diffusion, 6)
    out = fill_masked_region(
        unet, diffusion, sampler, canvas, mask, batch_size=2, generator=torch.Generator().manual_seed(3)
    )
    assert out.shape == (2, 3, 32, 32)
    assert torch.equal(out[..., 8:24], image.expand(2, -1, -1, -1))
    # The generated border is not just the canvas filler and differs between the two samples.
    assert not torch.equal(out[0, :, :, :8], out[1, :, :, :8])
    assert out[..., :8].abs().max() > 0.1


def test_inpainting_with_user_mask(unet, diffusion, ddim, tmp_path: Path):
    image = smooth_image(2, height=32, batch=2)
    arr = np.zeros((32, 32), dtype=np.uint8)
    arr[10:20, 5:25] = 255  # white = generate
    Image.fromarray(arr).save(tmp_path / "mask.png")
    mask = load_mask(tmp_path / "mask.png")
    assert mask.shape == (1, 1, 32, 32) and mask.sum() == 10 * 20
    hook = KnownRegionHook(image, mask)
    out = sample_loop(unet, diffusion, ddim, image.shape, hooks=[hook], generator=torch.Generator().manual_seed(0))
    keep = mask.expand_as(image) == 0
    assert torch.equal(out[keep], image[keep])
    assert (out[~keep] - image[~keep]).abs().mean() > 0.05


def test_known_region_respects_t_start(unet, diffusion, ddim):
    """With a late start, the known region of the starting point is already the noised image."""
    image = smooth_image(4)
    canvas, mask = outpaint_canvas(image[..., :24], right=8)
    hook = KnownRegionHook(canvas, mask)
    out = sample_loop(unet, diffusion, ddim, canvas.shape, hooks=[hook], t_start=ddim.timesteps[3])
    assert torch.equal(out[..., :24], image[..., :24])


def test_repaint_resampling_runs_more_model_calls(unet, diffusion):
    image = smooth_image(5)
    canvas, mask = outpaint_canvas(image[..., :, 4:28], left=4, right=4)
    sampler = make_sampler("ddpm", diffusion, 5)
    counts = {}
    for name, kwargs in {
        "plain": {},
        "resample": {"resample": 2},
        "until": {"resample": 2, "resample_until": sampler.timesteps[1]},
    }.items():
        model = CountingModel(unet)
        out = sample_loop(model, diffusion, sampler, canvas.shape, hooks=[KnownRegionHook(canvas, mask, **kwargs)])
        assert torch.equal(out[..., 4:28], image[..., 4:28])
        counts[name] = model.calls
    assert counts["plain"] == 5
    assert counts["resample"] == 5 * 3
    assert counts["until"] == 2 * 3 + 3  # only the two noisiest steps are resampled


def test_resample_count_bounds():
    image = smooth_image(0)
    _, mask = outpaint_canvas(image[..., :16], right=16)
    hook = KnownRegionHook(torch.zeros(1, 3, 32, 32), mask, resample=3, resample_until=100)
    assert hook.resample_count(999) == 3 and hook.resample_count(100) == 3 and hook.resample_count(99) == 0
    with pytest.raises(ValueError, match="non-negative"):
        KnownRegionHook(torch.zeros(1, 3, 32, 32), mask, resample=-1)


def test_outpaint_to_size_anchors():
    image = smooth_image(0, height=16)
    canvas, mask = outpaint_to_size(image, 16, 48, anchor="left")
    assert canvas.shape == (1, 3, 16, 48)
    assert torch.equal(canvas[..., :16], image) and mask[..., :16].sum() == 0 and mask[..., 16:].min() == 1
    canvas, mask = outpaint_to_size(image, 21, 16, anchor="center")
    assert torch.equal(canvas[..., 2:18, :], image)  # 5 extra rows: 2 on top, 3 below
    canvas, mask = outpaint_to_size(image, 20, 20, anchor="bottom-right")
    assert torch.equal(canvas[..., 4:, 4:], image)
    with pytest.raises(ValueError, match="smaller than the image"):
        outpaint_to_size(image, 8, 32)
    with pytest.raises(ValueError, match="unknown anchor"):
        outpaint_to_size(image, 32, 32, anchor="middle")
    with pytest.raises(ValueError, match="at least one"):
        outpaint_canvas(image)
    with pytest.raises(ValueError, match="non-negative"):
        outpaint_canvas(image, left=-2)


def test_validate_mask_errors():
    image = torch.zeros(2, 3, 16, 16)
    good = torch.zeros(1, 1, 16, 16)
    good[..., :4] = 1
    assert validate_mask(good, image).shape == (1, 1, 16, 16)
    assert validate_mask(good[0, 0], image).shape == (1, 1, 16, 16)  # [H, W] accepted
    with pytest.raises(ValueError, match="does not match image size"):
        validate_mask(torch.ones(1, 1, 8, 16), image)
    with pytest.raises(ValueError, match="nothing to generate"):
        validate_mask(torch.zeros(1, 1, 16, 16), image)
    with pytest.raises(ValueError, match="nothing of the image is known"):
        validate_mask(torch.ones(1, 1, 16, 16), image)
    with pytest.raises(ValueError, match="one channel"):
        validate_mask(torch.zeros(1, 3, 16, 16), image)
    with pytest.raises(ValueError, match="batch"):
        validate_mask(good.expand(3, -1, -1, -1), image)
    with pytest.raises(ValueError, match="0 \\(keep\\) or 1"):
        validate_mask(good * 0.5, image)
    # A batch where one item's mask is empty is rejected too.
    batch = torch.cat([good, torch.zeros_like(good)])
    with pytest.raises(ValueError, match="nothing to generate"):
        validate_mask(batch, image)


def test_known_image_must_fit_the_samples(unet, diffusion, ddim):
    canvas, mask = outpaint_canvas(smooth_image(0, height=16), right=16)
    with pytest.raises(ValueError, match="does not fit the samples"):
        sample_loop(unet, diffusion, ddim, (1, 3, 32, 32), hooks=[KnownRegionHook(canvas, mask)])
