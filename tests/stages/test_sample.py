"""The sample stage: N PNGs of any size, a grid and samples.json; seeded; atomic output folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sindiffusion.cli import main
from sindiffusion.stages import sample as sample_stage
from tests.tiny import one_torch_thread  # noqa: F401


@pytest.fixture
def proj(trained_project) -> Path:
    """A fresh copy of the trained project (tests/conftest.py, 4 steps), as the working directory."""
    return trained_project


def _sample(*argv: str) -> int:
    return main(["sample", "--image", "img", "--no-progress", *argv])


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_default_output(proj, capsys):
    assert _sample() == 0
    out = proj / "results/img/samples"
    assert sorted(p.name for p in out.iterdir()) == [
        ".sindiffusion-output",
        "grid.png",
        "sample_000.png",
        "sample_001.png",
        "samples.json",
    ]
    for name in ("sample_000.png", "sample_001.png"):
        img = Image.open(out / name)
        assert img.mode == "RGB" and img.size == (48, 40)  # training size: scale 1 x 1
    grid = Image.open(out / "grid.png")
    assert grid.size[0] >= 48 and grid.size[1] >= 40 and grid.size != (48, 40)
    meta = json.loads((out / "samples.json").read_text())
    assert meta["files"] == ["sample_000.png", "sample_001.png"] and meta["size"] == [40, 48]
    assert meta["checkpoint_step"] == 4 and meta["checkpoint"] == "results/img/train/model.pt"
    assert (meta["sampler"], meta["steps"], meta["seed"], meta["num_samples"]) == ("ddim", 5, 0, 2)
    assert meta["sample_seconds"] > 0 and meta["seconds_per_step"] > 0
    assert meta["seams"] is None  # not the tile start: nothing laid side by side
    a, b = _pixels(out / "sample_000.png"), _pixels(out / "sample_001.png")
    assert not np.array_equal(a, b)  # two different samples
    assert a.std() > 1  # not a flat image
    assert "2 samples of 40x48" in capsys.readouterr().out


@pytest.mark.parametrize("height,width", [(37, 53), (41, 29), (16, 90)])
def test_any_output_size(proj, height, width):
    assert _sample("--height", str(height), "--width", str(width), "--out", "odd") == 0
    meta = json.loads((proj / "odd/samples.json").read_text())
    assert meta["size"] == [height, width]
    for name in meta["files"]:
        assert Image.open(proj / "odd" / name).size == (width, height)


def test_scale_factors_and_more_samples_than_a_batch(proj):
    assert _sample("--set", "sample.scale_w=1.5", "--set", "sample.scale_h=0.9", "--num", "3") == 0
    meta = json.loads((proj / "results/img/samples/samples.json").read_text())
    assert meta["size"] == [36, 72]  # round(40 * 0.9), round(48 * 1.5)
    assert meta["files"] == ["sample_000.png", "sample_001.png", "sample_002.png"]
    assert Image.open(proj / "results/img/samples/sample_002.png").size == (72, 36)


def test_seed_controls_the_samples(proj):
    assert _sample("--out", "a", "--seed", "3") == 0
    assert _sample("--out", "b", "--seed", "3") == 0
    assert _sample("--out", "c", "--seed", "4") == 0
    for name in ("sample_000.png", "sample_001.png", "grid.png"):
        assert np.array_equal(_pixels(proj / "a" / name), _pixels(proj / "b" / name))
        assert not np.array_equal(_pixels(proj / "a" / name), _pixels(proj / "c" / name))


def test_ddpm_sampler_and_explicit_checkpoint(proj):
    ckpt = proj / "elsewhere.pt"
    shutil.copy(proj / "results/img/train/model.pt", ckpt)
    assert _sample("--sampler", "ddpm", "--steps", "4", "--checkpoint", str(ckpt), "--out", "ddpm") == 0
    meta = json.loads((proj / "ddpm/samples.json").read_text())
    assert meta["sampler"] == "ddpm" and meta["steps"] == 4 and meta["checkpoint"] == str(ckpt)
    assert len(meta["files"]) == 2


@pytest.mark.parametrize(
    "attr, error, extra",
    [
        ("generate", RuntimeError("out of memory"), ()),  # fails while sampling
        ("save_grid", OSError("disk full"), ("--num", "3")),  # fails while writing (after sample_000..002.png)
    ],
)
def test_failure_keeps_previous_samples(proj, monkeypatch, capsys, attr, error, extra):
    assert _sample() == 0
    out = proj / "results/img/samples"
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(sample_stage, attr, broken)
    assert _sample("--seed", "9", *extra) == 1
    assert str(error) in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old files intact, no sample_002.png
    assert sorted(p.name for p in out.parent.iterdir()) == ["preprocess", "samples", "train"]  # no temp folder


def test_bad_requests(proj, capsys):
    assert _sample("--height", "4", "--width", "40") == 2
    assert "sample.height: must be >= 8, got 4" in capsys.readouterr().err
    assert _sample("--set", "sample.sampler=euler") == 2
    assert "euler" in capsys.readouterr().err
    assert _sample("--checkpoint", "results/img/preprocess/image.png") == 2
    assert "image.png: not a readable checkpoint" in capsys.readouterr().err
    assert not (proj / "results/img/samples").exists()


@pytest.mark.parametrize("clip", ["dynamic", "low_noise", "false"])
def test_x0_modes_and_bf16_sample(proj, capsys, clip):
    assert _sample("--set", f"sample.clip_x0={clip}", "--set", "sample.precision=bf16") == 0
    meta = json.loads((proj / "results/img/samples/samples.json").read_text())
    assert str(meta["clip_x0"]).lower() == clip and meta["precision"] == "bf16"
    assert "sample: bf16 autocast (precision=bf16)" in capsys.readouterr().err


def test_bad_x0_mode_is_exit_2_naming_the_key(proj, capsys):
    assert _sample("--set", "sample.clip_x0=sometimes") == 2
    assert (
        "sample.clip_x0: expected true/false, got str 'sometimes'; allowed: true/false or dynamic or low_noise"
        in capsys.readouterr().err
    )
    assert not (proj / "results/img/samples").exists()


def test_layout_start_without_the_processed_image_is_exit_2_before_anything(proj, capsys):
    """sample.init=layout (params.yaml's default) needs the training image: a clear error, no run, no files."""
    (proj / "results/img/preprocess/image.png").unlink()
    assert _sample("--set", "sample.init=layout") == 2
    err = capsys.readouterr().err
    assert "image.png: sample.init=layout starts from this processed training image" in err
    assert "sample.init=noise" in err
    assert not (proj / "results/img/samples").exists()
    assert _sample("--set", "sample.init=noise") == 0  # the pure-noise start needs only the checkpoint


def test_patch_matching_without_the_processed_image_is_exit_2_naming_the_key(proj, capsys):
    """sample.match_steps matches the samples to the training image: it needs the file as the starts do."""
    (proj / "results/img/preprocess/image.png").unlink()
    assert _sample("--set", "sample.init=noise", "--set", "sample.finish=none", "--set", "sample.match_steps=5") == 2
    err = capsys.readouterr().err
    assert "image.png: sample.match_steps=5 starts from this processed training image" in err
    assert "sample.match_steps=0" in err
    assert not (proj / "results/img/samples").exists()


def test_layout_start_checks_the_processed_image_before_loading_the_model(proj, capsys, monkeypatch):
    """The cheap file check comes first: a missing training image fails without loading the checkpoint,
    and with neither file the error names the first step to run (preprocess, then train)."""
    loaded = []
    monkeypatch.setattr(sample_stage, "load_bundle", lambda *a, **k: loaded.append(a) or pytest.fail("model loaded"))
    (proj / "results/img/preprocess/image.png").unlink()
    (proj / "results/img/train/model.pt").unlink()
    assert _sample("--set", "sample.init=layout") == 2
    assert "image.png: sample.init=layout starts from this processed training image" in capsys.readouterr().err
    assert loaded == [] and not (proj / "results/img/samples").exists()


def test_a_start_above_train_t_max_is_exit_2_before_anything(proj, capsys):
    """A model trained with train.t_max = 0.5 never saw the higher noise levels: a pure-noise start or
    a layout start above 0.5 T is refused naming the setting and the checkpoint; a start at 0.5 T runs."""
    assert main(["train", "--image", "img", "--no-progress", "--set", "train.t_max=0.5"]) == 0
    capsys.readouterr()
    assert _sample("--set", "sample.init=noise") == 2
    err = capsys.readouterr().err
    assert "sample.init=noise starts at pure noise (step 99 of 100)" in err
    assert "results/img/train/model.pt was trained only on t <= 50 (train.t_max=0.5)" in err
    assert _sample("--set", "sample.init=layout", "--set", "sample.init_t=0.9") == 2
    assert "sample.init_t=0.9 starts at step 74 of 100, but" in capsys.readouterr().err
    tile = ["--set", "sample.init=tile", "--set", "sample.init_t=0.5"]
    assert _sample(*tile, "--set", "sample.seam_t=0.9") == 2  # the seams' band would start above t_max
    assert "sample.seam_t=0.9 starts at step 74 of 100, but" in capsys.readouterr().err
    assert not (proj / "results/img/samples").exists()
    assert _sample("--set", "sample.init=layout", "--set", "sample.init_t=0.5") == 0


@pytest.mark.parametrize("start", ["native", "tile"])
@pytest.mark.parametrize("height,width", [(40, 96), (80, 48), (37, 53)])
def test_native_and_tile_starts_with_the_unet_at_any_size(proj, height, width, start):
    """``sample.init: native`` and ``tile`` are weight-free: the UNet starts from the same natural-size layout."""
    argv = ["--height", str(height), "--width", str(width), "--out", "nat", "--set", f"sample.init={start}"]
    assert _sample(*argv, "--set", "sample.layout_side=10", "--set", "sample.init_t=0.5") == 0
    meta = json.loads((proj / "nat/samples.json").read_text())
    assert meta["size"] == [height, width] and meta["start"] == start
    assert _pixels(proj / "nat" / meta["files"][0]).std() > 1


@pytest.mark.parametrize("scale_w", ["1", "1.5", "2"])
def test_seams_redrawn_from_more_noise_at_every_size_that_wraps(proj, scale_w):
    """``sample.seam_t``: the rolled (1x) and tiled (wider) starts run from seam_t with their seams'
    band; the settings are recorded, and the plain tile start's samples differ from them."""
    common = ["--set", f"sample.scale_w={scale_w}", "--set", "sample.init=tile", "--set", "sample.init_t=0.5"]
    assert _sample(*common, "--set", "sample.seam_t=0.9", "--set", "sample.seam_width=0.5", "--out", "seam") == 0
    pinned = ["--set", "sample.seam_t=0.9", "--set", "sample.seam_pin=4", "--out", "pinned"]
    assert _sample(*common, *pinned) == 0
    assert _sample(*common, "--out", "plain") == 0
    meta = json.loads((proj / "seam/samples.json").read_text())
    assert meta["start"] == "tile" and meta["seam_t"] == 0.9 and meta["seam_width"] == 0.5
    # every sample's seams recorded (the same arrangements with and without the redraw), for seam-jump
    assert meta["seams"] == json.loads((proj / "plain/samples.json").read_text())["seams"]
    assert len(meta["seams"]) == len(meta["files"]) and all(0 < j < meta["size"][1] for s in meta["seams"] for j in s)
    if scale_w != "1":  # wider: at least one seam in every sample (at 1x a roll by 0 has none)
        assert all(meta["seams"])
        assert main(["seam-jump", "seam"]) == 0
    first = meta["files"][0]
    assert not np.array_equal(_pixels(proj / "seam" / first), _pixels(proj / "plain" / first))
    if scale_w != "1":  # the pin changes what the band draws
        assert not np.array_equal(_pixels(proj / "pinned" / first), _pixels(proj / "seam" / first))


def test_swapped_strips_at_the_training_size(proj):
    """``sample.tile_cols: swap``: at the training size each sample's layout has two inner strips of
    the image swapped (three seams recorded, redrawn like the roll's); at any other size it changes
    nothing."""
    common = ["--set", "sample.init=tile", "--set", "sample.init_t=0.5", "--set", "sample.seam_t=0.9"]
    swap = ["--set", "sample.tile_cols=swap"]
    assert _sample(*common, *swap, "--out", "swap") == 0
    assert _sample(*common, "--out", "roll") == 0
    meta = json.loads((proj / "swap/samples.json").read_text())
    assert meta["tile_cols"] == "swap" and meta["seam_redraw"] is not None
    assert [len(s) for s in meta["seams"]] == [3, 3]
    assert meta["seams"] != json.loads((proj / "roll/samples.json").read_text())["seams"]
    wide = ["--set", "sample.scale_w=2"]
    assert _sample(*common, *swap, *wide, "--out", "wswap") == 0
    assert _sample(*common, *wide, "--out", "wroll") == 0
    first = meta["files"][0]
    assert np.array_equal(_pixels(proj / "wswap" / first), _pixels(proj / "wroll" / first))


def test_the_swap_is_searched_once_a_draw(proj, monkeypatch):
    """Three batches of one sample: the arrangements are searched by the first batch's hook and
    handed on, and every sample still gets its own arrangement (three seams each)."""
    from sindiffusion.applications import tiled_layout

    calls = []
    search = tiled_layout.swap_arrangements
    monkeypatch.setattr(
        tiled_layout, "swap_arrangements", lambda image, pool: calls.append(pool) or search(image, pool)
    )
    batches = ["--set", "sample.num_samples=3", "--set", "sample.batch_size=1"]
    swap = ["--set", "sample.init=tile", "--set", "sample.tile_cols=swap", "--set", "sample.init_t=0.5"]
    assert _sample(*swap, *batches, "--set", "sample.swap_pool=0.2", "--out", "swap3") == 0
    assert calls == [0.2]  # once, with the section's pool
    seams = json.loads((proj / "swap3/samples.json").read_text())["seams"]
    assert [len(s) for s in seams] == [3, 3, 3] and len({tuple(s) for s in seams}) > 1


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["sample.tile_cols=shuffle"], "sample.tile_cols"),
        (["sample.init=tile", "sample.seam_width=0"], "sample.seam_width"),
        (
            ["sample.init=tile", "sample.init_t=0.5", "sample.seam_t=0.9", "sample.seam_pin=1"],
            "sample.seam_pin: must be 0",
        ),
        (["sample.init=tile", "sample.seam_t=1.5"], "sample.seam_t"),
        (["sample.swap_pool=0"], "sample.swap_pool"),
        (["sample.swap_pool=1.5"], "sample.swap_pool"),
    ],
)
def test_a_bad_seam_setting_is_exit_2_naming_the_key(proj, capsys, overrides, message):
    assert _sample(*[a for o in overrides for a in ("--set", o)], "--out", "bad") == 2
    assert message in capsys.readouterr().err
    assert not (proj / "bad").exists()


@pytest.mark.parametrize(
    "overrides,redraw",
    [
        # the tile start with seams and seam_t above init_t: redrawn, the pin capped at a quarter of the
        # output's short side (40 px high: 10)
        (["sample.init=tile", "sample.init_t=0.5", "sample.seam_t=0.9", "sample.seam_pin=64"], (0.9, 10)),
        (["sample.init=tile", "sample.init_t=0.5", "sample.seam_t=0.9", "sample.seam_pin=4"], (0.9, 4)),
        # seam_t not above init_t: the seams start with the rest (nothing to redraw)
        (["sample.init=tile", "sample.init_t=0.5", "sample.seam_t=0.4", "sample.seam_pin=4"], None),
        # other starts have no seams; seam_pin without seam_t is unused (sub-options, as layout_* are)
        (["sample.init=layout", "sample.seam_t=0.9", "sample.seam_pin=4"], None),
        (["sample.init=tile", "sample.seam_t=0", "sample.seam_pin=8"], None),
    ],
)
def test_seam_settings_the_start_cannot_use_are_ignored_and_recorded(proj, overrides, redraw):
    """The seam keys are sub-options of the tile start: where they cannot act (another start, seam_t
    at or below init_t, no seam_t) sampling runs as without them, so that a default redraw never makes
    another setting an error; ``samples.json``'s ``seam_redraw`` says what was used."""
    sets = [a for o in [*overrides, "sample.scale_w=2"] for a in ("--set", o)]
    assert _sample(*sets, "--out", "s") == 0
    meta = json.loads((proj / "s/samples.json").read_text())
    if redraw is None:
        assert meta["seam_redraw"] is None
    else:
        assert (meta["seam_redraw"]["seam_t"], meta["seam_redraw"]["seam_pin"]) == redraw
        assert meta["seam_redraw"]["seam_width_px"] == pytest.approx(0.25 * meta["size"][1] / 2)


@pytest.mark.parametrize("scale_h,scale_w,pinned", [("2", "1", 12), ("1.5", "1", 12), ("1", "1", 10), ("1", "2", 10)])
def test_the_layout_pin_acts_at_every_size_and_is_recorded(proj, scale_h, scale_w, pinned):
    """``sample.layout_pin``: the tile start's canvas, taller, wider or at the training size, holds its
    coarse band to the layout's, capped at a quarter of the output's short side as seam_pin is (the
    tiny image is 40x48: 16 becomes 12 on a taller canvas, 10 on one of its height); the samples
    change, and ``samples.json`` records the factor used."""
    common = [f"sample.scale_h={scale_h}", f"sample.scale_w={scale_w}", "sample.init=tile", "sample.init_t=0.5"]
    sets = [a for o in common for a in ("--set", o)]
    assert _sample(*sets, "--set", "sample.layout_pin=16", "--set", "sample.layout_pin_t=0.2", "--out", "pin") == 0
    assert _sample(*sets, "--out", "free") == 0
    meta = json.loads((proj / "pin/samples.json").read_text())
    assert meta["layout_pinned"] == pinned and meta["layout_pin"] == 16
    assert json.loads((proj / "free/samples.json").read_text())["layout_pinned"] == 0
    first = meta["files"][0]
    assert not np.array_equal(_pixels(proj / "pin" / first), _pixels(proj / "free" / first))


@pytest.mark.parametrize("init", ["layout", "noise"])
def test_the_layout_pin_is_a_sub_option_of_the_tile_start(proj, init):
    """Another start ignores ``layout_pin`` (as it does the seam keys) and records 0."""
    sets = [f"sample.init={init}", "sample.init_t=0.5", "sample.layout_pin=8"]
    assert _sample(*[a for o in sets for a in ("--set", o)], "--out", "other") == 0
    assert json.loads((proj / "other/samples.json").read_text())["layout_pinned"] == 0


def test_a_layout_pin_ending_above_the_start_is_recorded_as_off(proj):
    sets = ["sample.scale_h=2", "sample.init=tile", "sample.init_t=0.5"]
    sets += ["sample.layout_pin=8", "sample.layout_pin_t=0.6"]
    assert _sample(*[a for o in sets for a in ("--set", o)], "--out", "late") == 0
    assert json.loads((proj / "late/samples.json").read_text())["layout_pinned"] == 0


def test_a_layout_pin_of_one_is_exit_2_naming_the_key(proj, capsys):
    assert _sample("--set", "sample.layout_pin=1", "--out", "bad") == 2
    assert "sample.layout_pin: must be 0" in capsys.readouterr().err
    assert not (proj / "bad").exists()


def test_the_earlier_name_rows_pin_is_exit_2_naming_the_new_one(proj, capsys):
    assert _sample("--set", "sample.rows_pin=8", "--out", "old") == 2
    assert "sample.rows_pin: unknown key (renamed 'layout_pin')" in capsys.readouterr().err
    assert not (proj / "old").exists()


def test_a_sample_larger_than_max_pixels_is_exit_2_naming_the_key(proj, capsys):
    assert _sample("--height", "100000", "--width", "100000", "--out", "huge") == 2
    err = capsys.readouterr().err
    assert "sample size 100000x100000" in err and "preprocess.max_pixels" in err
    assert not (proj / "huge").exists()
    assert _sample("--height", "64", "--width", "64", "--out", "ok", "--set", "preprocess.max_pixels=4096") == 0
