"""``sample.init: tile`` (applications/tiled_layout.py): the image tiled to the output size.

Tiny seeded images, measured: a 2x-wide layout of an image with one blob holds two blobs of the
blob's own width (the stretched ``layout`` start holds one blob twice as wide); a taller one keeps
the vertical order; narrower and shorter ones are crops of the image; one of the training size is
the image rolled sideways, a different roll per sample, or with ``tile_cols: swap`` two inner strips
swapped where the columns agree. A taller canvas with ``tile_rows: smooth``
gives its extra rows to the smooth rows and keeps an object's height. With ``sample.seam_t`` the
band around each seam starts from more noise while the rest is held at the noised layout."""

from __future__ import annotations

import pytest
import torch

from sindiffusion.applications.ilvr import LowPass
from sindiffusion.applications.layout_start import layout_of
from sindiffusion.applications.tiled_layout import (
    TiledLayoutStartHook,
    has_seams,
    row_heights,
    seam_columns,
    seam_mask,
    seam_pin_factor,
    swap_arrangements,
    swapped_columns,
    taller_rows,
    tiled_canvas,
    tiled_columns,
)
from tests.applications.blobs import blob_image, blob_widths, sampling_ctx


def _blob_heights(layout: torch.Tensor) -> list[int]:
    """Heights (px) of the red regions of ``layout [3, H, W]``: :func:`blob_widths` of its transpose."""
    return blob_widths(layout.transpose(-1, -2))


@pytest.mark.parametrize("u", [0.0, 0.3, 0.55, 0.9])
def test_a_2x_wide_layout_holds_two_blobs_of_the_image_size_where_the_stretched_one_doubles_it(u):
    img = blob_image()
    size = (24, 64)
    assert max(blob_widths(layout_of(img, 1, size)[0])) >= 15  # the old start: one blob, twice as wide
    tiled = tiled_canvas(img, size, (u, 0.0))[0]
    widths = blob_widths(tiled)
    # two copies: two blobs of 8 px, or one whole and two halves cut by the canvas's edges; never 16 px
    assert sum(widths) == 16 and max(widths) == 8, widths
    assert torch.equal(tiled.unique(), img.unique())  # only the image's colours


def test_the_phase_moves_the_blobs_and_values_stay_the_images():
    img = blob_image()
    a, b = tiled_canvas(img, (24, 64), (0.0, 0.0)), tiled_canvas(img, (24, 64), (0.5, 0.0))
    assert not torch.equal(a, b)
    assert torch.equal(a[..., :32], img)  # phase 0: the image, then its copy
    assert torch.equal(a[..., 32:], img)


def test_narrower_and_shorter_canvases_are_crops_and_taller_ones_keep_the_vertical_order():
    img = torch.zeros(1, 3, 24, 32)
    img[:, 2, :12] = 0.8  # blue sky
    img[:, 0, 12:] = 0.4  # brown ground
    crop = tiled_canvas(img, (12, 20), (0.5, 0.99))
    assert crop.shape == (1, 3, 12, 20)
    assert any(torch.equal(crop, img[..., r : r + 12, c : c + 20]) for r in range(13) for c in range(13))
    tall = tiled_canvas(img, (48, 32), (0.2, 0.7))[0]
    assert tall.shape == (3, 48, 32)
    assert bool((tall[2, :24] > 0.5).all()) and bool((tall[2, 24:] == 0).all())  # one sky, on top
    with pytest.raises(ValueError, match="shift"):
        tiled_canvas(img, (24, 64), (1.0, 0.0))


def test_the_hook_draws_one_arrangement_per_sample_from_its_own_generator():
    img = blob_image()
    hook = TiledLayoutStartHook(img, factor=1)
    both = hook.start(torch.zeros(4, 3, 24, 64), 50, sampling_ctx(4, size=(24, 64)))
    one = TiledLayoutStartHook(img, factor=1).start(
        torch.zeros(1, 3, 24, 64), 50, sampling_ctx(1, seed0=1, size=(24, 64))
    )
    assert hook.layout.shape == (4, 3, 24, 64)
    assert len({tuple(lay[0].argmax(-1).flatten().tolist()) for lay in hook.layout}) > 1  # other phases
    assert torch.allclose(both[1:2], one, atol=1e-6)  # sample 1 is the same alone or in a batch
    for lay in hook.layout:  # every sample: two blobs of the image's width (one may be cut by the edge)
        assert sum(blob_widths(lay)) == 16


@pytest.mark.parametrize("u", [0.0, 0.25, 0.6])
def test_at_the_training_size_the_image_is_rolled_sideways_by_the_phase(u):
    img = blob_image()
    rolled = tiled_canvas(img, (24, 32), (u, 0.3))
    assert torch.equal(rolled, torch.roll(img, -int(u * 32), dims=-1))  # every column kept, one seam
    assert sum(blob_widths(rolled[0])) == 8  # the blob keeps its width (cut in two by the edge at most)
    tall = tiled_canvas(img, (48, 32), (u, 0.3))  # as wide but taller: rows stretched, columns kept
    assert torch.equal(tall[..., ::2, :], img)


def test_the_hook_at_the_training_size_gives_each_sample_its_own_roll():
    img = blob_image()
    hook = TiledLayoutStartHook(img, factor=1)
    hook.start(torch.zeros(4, 3, 24, 32), 50, sampling_ctx(4, size=(24, 32)))
    rolls = {next(s for s in range(32) if torch.equal(lay[None], torch.roll(img, -s, dims=-1))) for lay in hook.layout}
    assert len(rolls) > 1


def test_smooth_rows_keep_the_blobs_height_where_the_even_stretch_doubles_it():
    """A 2x-tall canvas of a red square on a uniform ground: ``smooth`` gives the extra rows to the
    ground (no change along or across its rows) and draws the square at about its own height; the
    even stretch draws it twice as high. Every source row is used, in order."""
    img = blob_image(h=32, w=32, blob=8)
    stretched = tiled_canvas(img, (64, 32), (0.0, 0.0), "stretch")[0]
    smooth = tiled_canvas(img, (64, 32), (0.0, 0.0), "smooth")[0]
    assert _blob_heights(stretched) == [16]
    assert _blob_heights(smooth)[0] <= 10, _blob_heights(smooth)
    rows = taller_rows(img, 64, "smooth")
    assert rows.shape == (64,) and bool((rows.diff() >= 0).all()) and set(rows.tolist()) == set(range(32))
    heights = row_heights(img, 64)
    assert heights.sum().item() == pytest.approx(64) and bool((heights >= 1).all())


def test_smooth_rows_of_one_uniform_texture_are_the_even_stretch():
    img = torch.zeros(1, 3, 24, 16)
    img[:, :, ::2] = 0.5  # stripes: every row changes as much as the next
    assert torch.equal(taller_rows(img, 48, "smooth"), taller_rows(img, 48, "stretch"))


def test_rows_mode_and_height_are_checked():
    img = blob_image()
    with pytest.raises(ValueError, match="rows mode"):
        taller_rows(img, 48, "seams")
    with pytest.raises(ValueError, match="rows mode"):  # at the image's own height too
        taller_rows(img, img.shape[-2], "seams")
    with pytest.raises(ValueError, match="smaller"):
        taller_rows(img, 12, "smooth")


def test_the_hook_passes_the_rows_mode_on():
    img = blob_image(h=32, w=32, blob=8)
    hook = TiledLayoutStartHook(img, factor=1, rows="smooth")
    hook.start(torch.zeros(2, 3, 64, 32), 50, sampling_ctx(2, size=(64, 32)))
    assert all(max(_blob_heights(lay)) <= 10 for lay in hook.layout)


@pytest.mark.parametrize("u", [0.1, 0.5, 0.8])
def test_the_seam_band_is_centred_on_every_place_the_image_wraps(u):
    size = (24, 64)
    cols = tiled_columns((24, 32), size, u)
    assert torch.equal(tiled_canvas(blob_image(), size, (u, 0.0)), blob_image()[..., cols])
    wraps = [j for j in range(1, 64) if cols[j] == 0]  # the image's column 0 right of its column 31
    band = seam_mask(cols, 24, 8)
    assert band.shape == (1, 1, 24, 64) and bool((band == band[..., :1, :]).all())  # whole columns
    inside = torch.nonzero(band[0, 0, 0]).flatten().tolist()
    assert inside == sorted({j + d for j in wraps for d in range(-4, 4) if 0 <= j + d < 64})
    assert len(wraps) == (2 if int(u * 32) else 1)


def test_no_seam_band_where_the_canvas_does_not_wrap():
    assert not has_seams((24, 32), (24, 20)) and not has_seams((24, 32), (48, 32))  # a crop; taller
    assert has_seams((24, 32), (24, 32)) and has_seams((24, 32), (24, 48))  # rolled; wider
    assert seam_mask(tiled_columns((24, 32), (24, 20), 0.7), 24, 8).sum() == 0
    assert seam_mask(tiled_columns((24, 32), (24, 32), 0.0), 24, 8).sum() == 0  # a roll by 0


def test_the_seam_redraw_holds_all_but_the_band_at_the_noised_layout_until_the_join():
    """Above the join step only the band keeps the denoiser's output; outside it the sample is the
    layout noised to that step (fresh, seeded noise); from the join on nothing is replaced."""
    img = blob_image()
    ctx = sampling_ctx(2, size=(24, 64))
    hook = TiledLayoutStartHook(img, factor=1, seam_width=8, join_t=50)
    hook.start(torch.zeros(2, 3, 24, 64), 80, ctx)
    assert hook.keep is not None and hook.keep.shape == (2, 1, 24, 64)
    x = torch.full((2, 3, 24, 64), 5.0)  # far from anything the layout or its noise gives
    out = hook.after_step(x, 60, None, ctx)
    band = hook.keep == 0
    assert bool((out == 5.0).expand_as(out)[band.expand_as(out)].all())
    abar = ctx.diffusion.abar(60)
    eps = (out - abar**0.5 * hook.layout) / (1 - abar) ** 0.5
    held = eps[(~band).expand_as(out)]
    assert abs(held.mean().item()) < 0.1 and abs(held.std().item() - 1) < 0.1  # standard normal noise
    assert torch.equal(hook.after_step(x, 49, None, ctx), x)  # below the join: the loop's own step
    for keep in hook.keep:  # each sample's band lies on its own seams
        assert 0 < (keep == 0).float().mean() < 0.5


def test_without_seam_settings_or_below_the_join_the_hook_is_the_plain_tile_start():
    img = blob_image()
    plain = TiledLayoutStartHook(img, factor=1)
    late = TiledLayoutStartHook(img, factor=1, seam_width=8, join_t=50)
    a = plain.start(torch.zeros(2, 3, 24, 64), 50, sampling_ctx(2, size=(24, 64)))
    b = late.start(torch.zeros(2, 3, 24, 64), 50, sampling_ctx(2, size=(24, 64)))
    assert torch.equal(a, b) and plain.keep is None and late.keep is None


@pytest.mark.parametrize("size", [(24, 32), (24, 48), (24, 64), (24, 100)])
def test_the_hook_records_where_each_samples_image_wraps(size):
    """``hook.seams`` (what samples.json records) are the columns of each sample's layout whose
    source column does not follow its left neighbour's (found here by matching every layout column
    to the random image's columns), and there the image's first column stands right of its last."""
    img = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    hook = TiledLayoutStartHook(img, factor=1)
    hook.start(torch.zeros(3, 3, *size), 50, sampling_ctx(3, size=size))
    assert len(hook.seams) == 3
    for lay, seams in zip(hook.layout, hook.seams):
        # [W, 32] distances from each layout column to each image column: the source is the nearest
        source = torch.cdist(lay.permute(2, 0, 1).flatten(1), img[0].permute(2, 0, 1).flatten(1)).argmin(1)
        assert seams == [j for j in range(1, size[1]) if source[j] != source[j - 1] + 1]
        assert all(source[j] == 0 and source[j - 1] == 31 for j in seams)
    assert seam_columns(torch.arange(10)) == [] and seam_columns(torch.tensor([3, 4, 0, 1])) == [2]


def test_the_seam_pin_holds_the_bands_coarse_band_to_the_noised_layouts():
    """With ``seam_pin`` N the band keeps the denoiser's detail but takes its low band (the sample down
    by N) from the layout noised to that step (ILVR): a band of constant 5 (nothing like the layout)
    comes out at the noised layout's low band; without the pin it is left as it was."""
    img = blob_image(h=32, w=32)
    x = torch.full((2, 3, 32, 64), 5.0)
    plain = TiledLayoutStartHook(img, factor=1, seam_width=16, join_t=50)
    pinned = TiledLayoutStartHook(img, factor=1, seam_width=16, join_t=50, seam_pin=4)
    plain.start(torch.zeros_like(x), 80, sampling_ctx(2, size=(32, 64)))
    ctx = sampling_ctx(2, size=(32, 64))
    pinned.start(torch.zeros_like(x), 80, ctx)
    band = (pinned.keep == 0).expand_as(x)
    assert bool((plain.after_step(x, 60, None, sampling_ctx(2, size=(32, 64)))[band] == 5.0).all())
    out = pinned.after_step(x, 60, None, ctx)
    assert out[band].abs().mean() < 1.5  # the layout's scale ([-1, 1] plus noise), not 5
    held = out[~band]  # outside the band: the noised layout itself, as without the pin
    layout = (ctx.diffusion.abar(60) ** 0.5 * pinned.layout).expand_as(x)[~band]
    assert abs(held.mean().item() - layout.mean().item()) < 0.1


def test_seam_pin_factor_is_capped_at_a_quarter_of_the_short_side():
    assert seam_pin_factor(16, (96, 192)) == 16
    assert seam_pin_factor(16, (40, 96)) == 10  # 40 // 4: the held band keeps LowPass's 4 px minimum
    LowPass(seam_pin_factor(64, (41, 96))).check(41, 96)
    assert seam_pin_factor(16, (7, 200)) == 0  # a factor below 2 would hold the whole band: no pin
    assert seam_pin_factor(0, (96, 192)) == 0


def _periodic_image(period: int = 8, width: int = 64) -> torch.Tensor:
    """``[1, 3, 16, width]``: random columns repeating every ``period`` columns."""
    pattern = torch.rand(1, 3, 16, period, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return pattern.repeat(1, 1, 1, width // period)


def test_swapped_strips_are_cut_where_the_columns_agree():
    """Columns repeating every 8: a junction joins two alike columns exactly when the strips' cuts
    lie a multiple of 8 apart, so the cheapest arrangements are those, and they leave the image as
    it is; every arrangement kept is a valid cut (strips and edges wide enough)."""
    img = _periodic_image()
    arr = swap_arrangements(img)
    assert arr.ndim == 2 and arr.shape[1] == 3 and arr.shape[0] > 1
    a, b, c = arr.T
    assert bool(((a >= 8) & (b - a >= 8) & (c - b >= 8) & (64 - c >= 8)).all())  # an eighth of 64
    for u in (0.0, 0.1):  # the cheapest tenth of the pool: the cost-free cuts (1/64 of all, in 1/20)
        cols = swapped_columns(64, arr, u)
        assert torch.equal(img[..., cols], img)
    # a random image: the drawn arrangement is a permutation with three seams and both image edges kept
    rnd = torch.rand(1, 3, 16, 64, generator=torch.Generator().manual_seed(1))
    cols = swapped_columns(64, swap_arrangements(rnd), 0.5)
    assert sorted(cols.tolist()) == list(range(64)) and cols[0] == 0 and cols[-1] == 63
    assert len(seam_columns(cols)) == 3


def test_swapped_strips_keep_a_blobs_width_and_move_it():
    """A 32-px-wide image with one 8-px blob: a swap keeps the blob's width (it is not cut: the
    cheap cuts are in the flat background) and some arrangements move it."""
    img = blob_image()
    arr = swap_arrangements(img)
    layouts = [img[..., swapped_columns(32, arr, u)] for u in (0.0, 0.25, 0.5, 0.75, 0.99)]
    assert all(blob_widths(lay[0]) == [8] for lay in layouts)
    assert any(not torch.equal(lay, img) for lay in layouts)


def test_a_larger_pool_keeps_the_smaller_pools_arrangements_and_adds_dearer_ones():
    """``sample.swap_pool``: the arrangements come cheapest first, so a larger pool holds the smaller
    pool's and adds dearer ones; a pool outside (0, 1] is refused."""
    img = torch.rand(1, 3, 16, 64, generator=torch.Generator().manual_seed(2))
    small, large, whole = (swap_arrangements(img, pool) for pool in (0.05, 0.5, 1.0))
    assert len(small) < len(large) < len(whole)
    rows = [{tuple(r) for r in arr.tolist()} for arr in (small, large, whole)]
    assert rows[0] <= rows[1] <= rows[2]
    for pool in (0.0, 1.5):
        with pytest.raises(ValueError, match="pool"):
            swap_arrangements(img, pool)


def test_an_image_too_narrow_to_cut_is_left_as_it_is():
    img = torch.rand(1, 3, 8, 3)
    arr = swap_arrangements(img)
    assert arr.shape == (0, 3) and torch.equal(swapped_columns(3, arr, 0.7), torch.arange(3))


def test_the_hook_swaps_at_the_training_size_only_and_records_the_seams():
    """``cols="swap"``: at the training size each sample gets its own swapped arrangement (three seams
    recorded); at 2x wide the tiles are as with the roll."""
    img = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    hook = TiledLayoutStartHook(img, factor=1, cols="swap")
    hook.start(torch.zeros(4, 3, 24, 32), 50, sampling_ctx(4, size=(24, 32)))
    assert all(len(s) == 3 for s in hook.seams)
    for lay in hook.layout:
        source = torch.cdist(lay.permute(2, 0, 1).flatten(1), img[0].permute(2, 0, 1).flatten(1)).argmin(1)
        assert sorted(source.tolist()) == list(range(32)) and source[0] == 0 and source[-1] == 31
    assert len({tuple(s) for s in hook.seams}) > 1  # not one arrangement for the batch
    wide, roll = TiledLayoutStartHook(img, factor=1, cols="swap"), TiledLayoutStartHook(img, factor=1)
    for h in (wide, roll):
        h.start(torch.zeros(2, 3, 24, 64), 50, sampling_ctx(2, size=(24, 64)))
    assert torch.equal(wide.layout, roll.layout)
    with pytest.raises(ValueError, match="cols must be"):
        TiledLayoutStartHook(img, factor=1, cols="shuffle")


def test_the_layout_pin_holds_the_whole_canvas_coarse_band_down_to_its_step():
    """``layout_pin`` N with ``pin_until``: after every step to ``t_prev >= pin_until`` the whole
    canvas's low band (down by N) is the noised layout's and its detail the denoiser's (ILVR): a
    constant 5 (nothing like the layout) comes out at the layout's scale, a pattern finer than N
    is kept; below the step, and without the pin, nothing is replaced."""
    img = blob_image(h=32, w=32)
    ctx = sampling_ctx(2, size=(64, 32))
    hook = TiledLayoutStartHook(img, factor=1, layout_pin=8, pin_until=50)
    hook.start(torch.zeros(2, 3, 64, 32), 80, ctx)
    assert hook.keep is None  # a taller canvas of the image's width has no seams
    checker = (torch.arange(32)[None, :] + torch.arange(64)[:, None]) % 2 * 0.2  # [64, 32]: a 1 px detail
    x = 5.0 + checker.expand(2, 3, 64, 32)
    out = hook.after_step(x, 60, None, ctx)
    assert out.abs().mean() < 1.5  # the noised layout's scale, not 5
    low = LowPass(8)
    layout = ctx.diffusion.abar(60) ** 0.5 * hook.layout
    assert (low(out) - low(layout)).abs().mean() < 0.1  # the coarse band: the layout's (plus coarse noise)
    detail = (out - low(out)) - (x - low(x))
    assert detail.abs().mean() < 0.1 * (x - low(x)).abs().mean() + 0.1  # the fine detail kept
    assert torch.equal(hook.after_step(x, 49, None, ctx), x)  # below pin_until: the loop's own step
    plain = TiledLayoutStartHook(img, factor=1)
    plain.start(torch.zeros(2, 3, 64, 32), 80, sampling_ctx(2, size=(64, 32)))
    assert torch.equal(plain.after_step(x, 60, None, ctx), x)
