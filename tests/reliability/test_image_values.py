"""Float and 16-bit images are scaled by their real range (issue 28, item 6): a float TIFF in [0, 1]
is not a black image, and NaN pixels are refused naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sindiffusion.data.io import ImageError, load_image

#: A left-to-right ramp, 0 (black) to 1 (white).
RAMP = np.tile(np.linspace(0.0, 1.0, 32, dtype=np.float32), (8, 1))


def _grey(path) -> np.ndarray:
    return np.asarray(load_image(path), dtype=np.float64)[..., 0]


@pytest.mark.parametrize("top", [1.0, 255.0, 65535.0], ids=["unit", "8bit-values", "16bit-values"])
def test_a_float_tiff_is_scaled_by_its_range(tmp_path, top):
    path = tmp_path / "float.tiff"
    Image.fromarray(RAMP * np.float32(top), mode="F").save(path)
    grey = _grey(path)
    assert grey[:, 0].max() == 0 and grey[:, -1].min() == 255, grey[0]
    assert abs(grey.mean() - 127.5) < 2


def test_a_float_tiff_outside_the_usual_ranges_is_stretched(tmp_path):
    path = tmp_path / "signed.tiff"
    Image.fromarray(RAMP * 2 - 1, mode="F").save(path)  # [-1, 1]
    grey = _grey(path)
    assert grey[:, 0].max() == 0 and grey[:, -1].min() == 255


def test_a_16bit_tiff_is_scaled_by_65535(tmp_path):
    path = tmp_path / "deep.tiff"
    Image.fromarray((RAMP * 65535).astype(np.uint16)).save(path)
    grey = _grey(path)
    assert grey[:, 0].max() == 0 and grey[:, -1].min() == 255


def test_nan_pixels_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "nan.tiff"
    arr = RAMP.copy()
    arr[0, 0] = np.nan
    Image.fromarray(arr, mode="F").save(path)
    with pytest.raises(ImageError, match="NaN") as info:
        load_image(path)
    assert str(path) in str(info.value)
