"""``sample.match_steps`` (applications/patch_matching.py): GPDM's patch-distribution matching, on
tiny seeded images. The SWD used to judge it has its own patch size and directions (seed 1000),
not the matcher's."""

from __future__ import annotations

import pytest
import torch

from sindiffusion.applications.nearest_finish import gaussian_blur
from sindiffusion.applications.patch_matching import (
    PatchMatchFinish,
    _quantile_table,
    _transport,
    _weighted_quantile_table,
    match_patch_distribution,
)
from sindiffusion.evaluation.patches import patch_swd
from sindiffusion.evaluation.structure import sharpness

from .test_nearest_finish import _texture


def _swd(img: torch.Tensor, x: torch.Tensor) -> float:
    """Patch SWD (5 px patches, directions of seed 1000) of ``x`` against ``img``, both in [-1, 1]."""
    return patch_swd((img[0] + 1) / 2, (x + 1) / 2, patch_size=5, seed=1000)


def test_the_histogram_transport_agrees_with_the_sorted_pairing():
    """``_transport`` (a histogram's CDF, no sort) against the exact 1-D optimal transport: the
    i-th smallest value goes to the target's quantile of rank i."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(3, 4000, generator=g) * torch.tensor([1.0, 2.0, 0.5])[:, None]
    target = torch.rand(3, 3000, generator=g) * 4 - 2
    out = _transport(v, _quantile_table(target, 1025))
    exact = torch.quantile(target, torch.linspace(0, 1, 4000), dim=1).T.gather(1, v.argsort(1).argsort(1))
    assert (out - exact).abs().mean() < 0.005
    assert bool((out.gather(1, v.argsort(1)).diff(dim=1) >= -1e-6).all())  # the map keeps each row's order


def test_the_weighted_quantiles_count_each_value_by_its_mass():
    """Equal masses give torch.quantile's table; a value of mass 3 is (up to the placement of its
    copies between their ranks) a value repeated three times."""
    g = torch.Generator().manual_seed(1)
    v = torch.randn(2, 500, generator=g)
    equal = _weighted_quantile_table(v, torch.ones(500), 257)
    assert torch.allclose(equal, _quantile_table(v, 257), atol=1e-5)
    mass = torch.ones(500)
    mass[:100] = 3.0
    repeated = torch.cat([v[:, :100]] * 3 + [v[:, 100:]], dim=1)
    gap = (_weighted_quantile_table(v, mass, 257) - _quantile_table(repeated, 257)).abs()
    assert gap.mean() < 0.005 and gap.max() < 0.1


def test_zero_steps_return_the_sample_unchanged():
    img = _texture()
    x = gaussian_blur(img, 1.0)
    assert torch.equal(match_patch_distribution(x, img, steps=0), x)


def test_a_blurred_copy_moves_towards_the_image_patches_and_gets_sharper():
    img = _texture()
    blurred = gaussian_blur(img, 1.2)
    out = match_patch_distribution(blurred, img, patch=5, steps=60, levels=(1,))
    assert _swd(img, out) < 0.6 * _swd(img, blurred)
    sharp_before = sharpness((img[0] + 1) / 2, (blurred + 1) / 2)
    assert sharpness((img[0] + 1) / 2, (out + 1) / 2) > sharp_before + 0.2
    assert out.shape == blurred.shape and out.abs().max() <= 1


def test_an_over_represented_content_gives_way_to_the_missing_one():
    """A 2x-wide canvas that holds the image's sky more than twice as often as the image does (80 %
    of its rows against a third): matching the patch distribution hands part of the surplus sky to
    the grass."""
    img = _texture(h=30, w=30)  # a third sky
    canvas = torch.cat([img, img], dim=-1).clone()
    canvas[:, :, : 2 * 30 // 3 + 4] = img[:, :, :1].mean(dim=-1, keepdim=True).expand(-1, -1, 24, 60)

    def sky(x: torch.Tensor) -> float:  # fraction of sky-coloured pixels (blue channel high)
        return float((x[:, 2] > 0.6).float().mean())

    out = match_patch_distribution(canvas, img, patch=5, steps=80, levels=(2, 1))
    assert sky(img) == pytest.approx(1 / 3, abs=0.01)
    assert sky(out) < sky(canvas) - 0.1
    assert _swd(img, out) < _swd(img, canvas)


def test_row_mass_lets_a_canvas_keep_the_extra_sky_it_was_given():
    """The canvas of the test above, matched with the image's sky rows weighted so that sky makes up
    80 % of the target: the sky stays (unweighted matching gives it away)."""
    img = _texture(h=30, w=30)  # rows 0-9 sky
    canvas = torch.cat([img, img], dim=-1).clone()
    canvas[:, :, : 2 * 30 // 3 + 4] = img[:, :, :1].mean(dim=-1, keepdim=True).expand(-1, -1, 24, 60)

    def sky(x: torch.Tensor) -> float:
        return float((x[:, 2] > 0.6).float().mean())

    mass = torch.ones(30)
    mass[:10] = 8.0  # 80 of 100 units: as much sky as the canvas holds
    kept = match_patch_distribution(canvas, img, patch=5, steps=80, levels=(2, 1), row_mass=mass)
    given = match_patch_distribution(canvas, img, patch=5, steps=80, levels=(2, 1))
    assert sky(kept) > sky(given) + 0.1
    with pytest.raises(ValueError, match="row_mass"):
        match_patch_distribution(canvas, img, row_mass=torch.ones(29))
    with pytest.raises(ValueError, match="row_mass"):
        match_patch_distribution(canvas, img, row_mass=torch.zeros(30))


def test_a_sample_does_not_depend_on_its_batch():
    img = _texture()
    g = torch.Generator().manual_seed(5)
    x = (gaussian_blur(img, 1.0) + 0.2 * torch.randn(3, 3, 32, 40, generator=g)).clamp(-1, 1)
    alone = match_patch_distribution(x[1:2], img, steps=10)
    batch = match_patch_distribution(x, img, steps=10)
    assert torch.allclose(alone[0], batch[1], atol=1e-4)


def test_another_size_and_a_level_too_small_for_a_patch_are_served():
    img = _texture()
    x = torch.rand(1, 3, 20, 70, generator=torch.Generator().manual_seed(2)) * 2 - 1
    out = match_patch_distribution(x, img, steps=5, levels=(8, 2, 1))  # at 8x the sample is 2 px high
    assert out.shape == (1, 3, 20, 70) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "kwargs",
    [dict(patch=0), dict(steps=-1), dict(lr=0.0), dict(projections=0), dict(levels=(2, 0)), dict(stride=0)],
)
def test_bad_arguments_are_a_value_error_naming_them(kwargs):
    img = _texture()
    with pytest.raises(ValueError, match="need patch >= 1"):
        match_patch_distribution(img, img, **kwargs)


def test_the_hook_matches_the_loop_output():
    img = _texture()
    x = gaussian_blur(img, 1.2).expand(2, -1, -1, -1)
    hook = PatchMatchFinish(img, patch=5, steps=5, levels=(1,), seed=3)
    assert torch.equal(hook.finish(x, None), match_patch_distribution(x, img, patch=5, steps=5, levels=(1,), seed=3))
