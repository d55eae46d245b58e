"""Sharpness, stretch and coverage on cases whose answer is known (synthetic images, seeded)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sindiffusion.evaluation import coverage, sharpness, stretch

from .helpers import smooth_image


def _textured(seed: int = 0, size: tuple[int, int] = (48, 64)) -> torch.Tensor:
    """Smooth colours plus isotropic fine texture ``[1,3,H,W]`` in [0,1] (edges in x and y alike)."""
    g = torch.Generator().manual_seed(seed + 100)
    return (smooth_image(seed, size) * 0.7 + 0.3 * torch.rand(1, 3, *size, generator=g)).clamp(0, 1)


def test_sharpness_of_the_image_is_one_and_a_blur_lowers_it():
    x = _textured()
    assert sharpness(x, x.repeat(3, 1, 1, 1)) == pytest.approx(1.0)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    assert sharpness(x, blurred) < 0.6
    grainy = (x + 0.2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    assert sharpness(x, grainy) > 1.0


def test_stretch_sees_a_sideways_and_a_tall_stretch():
    x = _textured()
    assert stretch(x, x) == pytest.approx(1.0)
    wide = F.interpolate(x, size=(48, 128), mode="bilinear", align_corners=False)
    tall = F.interpolate(x, size=(96, 64), mode="bilinear", align_corners=False)
    assert stretch(x, wide) < 0.75
    assert stretch(x, tall) > 1.3
    # A wider image made by tiling keeps its shapes: stretch stays near 1.
    assert stretch(x, torch.cat([x, x.flip(-1)], dim=-1)) == pytest.approx(1.0, abs=0.05)


def test_sharpness_and_stretch_refuse_a_constant_training_image():
    flat = torch.full((1, 3, 32, 32), 0.5)
    with pytest.raises(ValueError, match="constant"):
        sharpness(flat, _textured(size=(32, 32)))
    with pytest.raises(ValueError, match="constant"):
        stretch(flat, _textured(size=(32, 32)))


def test_coverage_of_the_image_is_one_and_of_a_constant_image_near_zero():
    x = _textured()
    assert coverage(x, x) == 1.0
    assert coverage(x, torch.full_like(x, float(x.mean()))) < 0.05
    # Half of the image (the left half, tiled) leaves most right-half patches uncovered.
    half = torch.cat([x[..., :32], x[..., :32]], dim=-1)
    assert 0.3 < coverage(x, half) < 0.8
    # Mean over samples: one perfect and one empty sample give about one half.
    both = coverage(x, [x[0], torch.full_like(x[0], 0.5)])
    assert both == pytest.approx(0.5, abs=0.05)
