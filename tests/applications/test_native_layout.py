"""``sample.init: native`` (applications/native_layout.py): layouts whose structures keep their size.

Tiny seeded images, measured: a 2x-wide layout of an image with one blob holds blobs of the
blob's own width (the stretched ``layout`` start holds one blob twice as wide)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sindiffusion.applications.layout_start import layout_of
from sindiffusion.applications.native_layout import NativeLayoutStartHook, canvas_size, native_layout
from tests.applications.blobs import blob_image, blob_widths, sampling_ctx


def test_a_2x_wide_layout_keeps_the_blob_size_where_the_stretched_one_doubles_it():
    img = blob_image()
    size = (24, 64)
    stretched = layout_of(img, 1, size)[0]
    assert max(blob_widths(stretched)) >= 15  # the old start: one blob twice as wide
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn((8, 3, *canvas_size((24, 32), size, 12, 7)[1]), generator=gen)
    layouts = native_layout(img, size, noise, side=12, patch=7)
    widths = [w for lay in layouts for w in blob_widths(lay) if w >= 3]
    assert widths, "no blob in any layout"
    # every blob has about the image's blob width (8 px), none the stretched 16
    assert np.median(widths) <= 11, widths
    assert max(widths) < 15, widths


def test_layout_values_stay_within_the_image_and_the_size_is_the_output():
    img = blob_image()
    out = native_layout(img, (30, 50), generator=torch.Generator().manual_seed(1))
    assert out.shape == (1, 3, 30, 50)
    assert float(out.min()) >= -0.8 - 1e-5 and float(out.max()) <= 0.9 + 1e-5


@pytest.mark.parametrize("size", [(24, 64), (48, 32)])
def test_the_vertical_order_of_the_scene_is_kept_at_2x_wide_and_tall(size):
    """Sky (blue) over ground (brown): every layout keeps blue on top and brown at the bottom, and a
    2x-tall one has no second sky band under the ground (no completeness for a taller canvas)."""
    img = torch.zeros(1, 3, 24, 32)
    img[:, :, :12] = torch.tensor([-0.6, -0.2, 0.8])[None, :, None, None]
    img[:, :, 12:] = torch.tensor([0.4, 0.0, -0.6])[None, :, None, None]
    canvas = canvas_size((24, 32), size, 12, 7)[1]
    lays = native_layout(img, size, torch.randn((4, 3, *canvas), generator=torch.Generator().manual_seed(2)))
    blue = lays[:, 2]  # [4, H, W]
    quarter = size[0] // 4
    assert blue[:, :quarter].mean() > 0.5 and blue[:, -quarter:].mean() < -0.3
    rows_blue = (blue.mean(-1) > 0.1).float()  # [4, H]: rows that are sky
    first_ground = (rows_blue == 0).float().argmax(-1)  # the first non-sky row of each layout
    for lay, start in zip(rows_blue, first_ground):
        assert lay[int(start) :].sum() == 0, "a sky band below the ground"


def test_canvas_size_follows_the_output_and_refuses_a_side_below_the_patch():
    assert canvas_size((96, 128), (96, 256), 12, 7) == ((12, 16), (12, 32))
    assert canvas_size((96, 128), (192, 128), 12, 7) == ((12, 16), (24, 16))
    with pytest.raises(ValueError, match="layout_side"):
        canvas_size((96, 128), (96, 128), 5, 7)


def test_the_hook_draws_one_layout_per_sample_from_its_own_generator():
    img = blob_image()
    hook = NativeLayoutStartHook(img)
    both = hook.start(torch.zeros(2, 3, 24, 48), 50, sampling_ctx(2))
    one = NativeLayoutStartHook(img).start(torch.zeros(1, 3, 24, 48), 50, sampling_ctx(1, seed0=1))
    assert hook.layout.shape == (2, 3, 24, 48)
    assert not torch.equal(both[0], both[1])  # two samples, two layouts
    assert torch.allclose(both[1:], one, atol=1e-6)  # sample 1 is the same alone or in a batch
