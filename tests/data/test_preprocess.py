"""preprocess_image / valid_size: sizes valid for the UNet, aspect kept, never upscaled."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from sindiffusion.data.io import ImageError
from sindiffusion.data.preprocess import min_side, preprocess_image, valid_size
from sindiffusion.models.receptive_field import analytic_receptive_field
from sindiffusion.models.unet import PRESETS
from tests.tiny import TINY_UNET

TINY = TINY_UNET


@pytest.mark.parametrize("m", [2, 4, 8])
@pytest.mark.parametrize("max_size", [32, 64, 126, 250])
def test_valid_size_properties(m, max_size):
    sides = [m * 4, 33, 37, 38, 39, 53, 64, 99, 186, 250, 251, 1000, 4032]
    for h, w in itertools.product(sides, sides):
        th, tw = valid_size(h, w, max_size, m)
        assert th % m == 0 and tw % m == 0, (h, w, th, tw)
        assert th <= h and tw <= w, f"{h}x{w} upscaled to {th}x{tw}"
        assert max(th, tw) <= max(max_size, m)
        scale = min(1.0, max_size / max(h, w))
        for target, got, orig in ((h * scale, th, h), (w * scale, tw, w)):
            nearest = max(m, round(target / m) * m)
            if target < m:
                assert got == m  # an extreme aspect ratio: one multiple (preprocess_image refuses it)
            elif nearest <= orig and nearest <= max_size:
                # the usual case: the nearest multiple, off by at most half a multiple
                assert abs(got - target) <= m / 2 + 1e-9, (h, w, max_size, m, th, tw)
            else:
                # rounding up would upscale or cross max_size: the next multiple down
                assert target - m < got <= target + 1e-9, (h, w, max_size, m, th, tw)


def test_valid_size_examples():
    assert valid_size(186, 248, 250, 4) == (184, 248)  # already fits: only snapped
    assert valid_size(3024, 4032, 250, 4) == (188, 248)  # 187.5 x 250 -> nearest multiples, <= 250
    assert valid_size(40, 48, 250, 4) == (40, 48)  # small images are not upscaled
    assert valid_size(38, 38, 250, 4) == (36, 36)  # 38 -> 40 would upscale


def _save(path, w, h, mode="RGB"):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).convert(mode).save(path)
    return path


def test_preprocess_image_resizes_and_describes(tmp_path):
    path = _save(tmp_path / "a.png", 300, 200)
    img, res = preprocess_image(path, 64, TINY)
    assert img.mode == "RGB" and img.size == (64, 42)  # 200*64/300 = 42.67 -> 42 (multiple of 2)
    assert res.original_size == (200, 300) and res.processed_size == (42, 64)
    assert res.receptive_field_px == analytic_receptive_field(TINY)
    assert res.receptive_field_fraction == pytest.approx(res.receptive_field_px / 64, abs=1e-4)
    d = res.to_dict()
    assert d["original_size"] == [200, 300] and d["processed_size"] == [42, 64] and d["source"] == str(path)


def test_paper_receptive_field_fraction(tmp_path):
    img, res = preprocess_image(_save(tmp_path / "a.png", 250, 186), 250, PRESETS["paper"])
    assert res.processed_size == (184, 248)
    assert res.receptive_field_px == 101
    assert res.receptive_field_fraction == pytest.approx(101 / 248, abs=1e-4)


@pytest.mark.parametrize("unet", [TINY, PRESETS["paper"], PRESETS["enhanced"]], ids=["tiny", "paper", "enhanced"])
def test_too_small_for_network(tmp_path, unet):
    smallest = min_side(unet)
    assert smallest == 4 * unet.size_multiple
    path = _save(tmp_path / "small.png", smallest * 3, smallest - 1)
    with pytest.raises(ImageError) as info:
        preprocess_image(path, 250, unet)
    msg = str(info.value)
    assert str(path) in msg and "too small" in msg and f"{smallest}x{smallest}" in msg
    ok, res = preprocess_image(_save(tmp_path / "ok.png", smallest, smallest), 250, unet)
    assert res.processed_size == (smallest, smallest)


def test_too_thin_after_resizing(tmp_path):
    # 20 x 400 is large enough, but at max_size 64 its short side would be 3 px: refuse it.
    path = _save(tmp_path / "thin.png", 400, 20)
    with pytest.raises(ImageError) as info:
        preprocess_image(path, 64, TINY)
    assert str(path) in str(info.value) and "max_size" in str(info.value)
    assert preprocess_image(path, 400, TINY)[1].processed_size == (20, 400)


def test_max_size_below_network_minimum(tmp_path):
    with pytest.raises(ImageError, match="max_size"):
        preprocess_image(_save(tmp_path / "a.png", 64, 64), 4, TINY)


def test_pixel_limit_passed_through(tmp_path):
    path = _save(tmp_path / "a.png", 64, 64)
    with pytest.raises(ImageError, match="decompression bomb"):
        preprocess_image(path, 64, TINY, max_pixels=100)
    assert preprocess_image(path, 64, TINY, max_pixels=None)[1].processed_size == (64, 64)
