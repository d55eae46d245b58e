"""The preprocess stage: raw image (any mode) -> processed PNG + JSON, nothing on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sindiffusion.cli import main
from sindiffusion.config import load_params
from sindiffusion.data.io import ImageError
from sindiffusion.models.receptive_field import analytic_receptive_field
from sindiffusion.stages import preprocess
from tests.tiny import tiny_project, write_image


@pytest.fixture
def proj(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path)
    return tmp_path


def _meta(root: Path, image: str = "img") -> dict:
    return json.loads((root / f"results/{image}/preprocess/image.json").read_text())


@pytest.mark.parametrize(
    "mode,suffix",
    [
        ("RGB", ".png"),
        ("RGBA", ".png"),
        ("L", ".png"),
        ("P", ".gif"),
        ("CMYK", ".jpg"),
        ("I;16", ".png"),
        ("RGB", ".webp"),
        ("RGB", ".bmp"),
    ],
)
def test_any_mode_becomes_rgb(proj, mode, suffix):
    src = proj / "data/images" / f"m{suffix}"
    if mode == "I;16":
        Image.fromarray((np.random.default_rng(0).random((40, 60)) * 65535).astype(np.uint16)).save(src)
    else:
        write_image(src, (40, 60), mode=mode)
    assert main(["preprocess", "--image", "m"]) == 0
    out = Image.open(proj / "results/m/preprocess/image.png")
    assert out.mode == "RGB" and out.size == (48, 32)  # longer side 48, aspect 3:2 kept
    assert _meta(proj, "m")["processed_size"] == [32, 48]


def test_meta_describes_the_run(proj):
    write_image(proj / "data/images/big.jpg", (201, 300))
    params = load_params("params.yaml")
    meta = preprocess.run(params, "big")
    assert meta == _meta(proj, "big")
    unet = params.section("model").unet()
    assert meta["original_size"] == [201, 300] and meta["processed_size"] == [32, 48]
    assert meta["source"] == "data/images/big.jpg"
    assert meta["receptive_field_px"] == analytic_receptive_field(unet)
    assert meta["receptive_field_fraction"] == pytest.approx(meta["receptive_field_px"] / 48, abs=1e-4)


def test_paper_model_needs_multiples_of_4(proj):
    write_image(proj / "data/images/odd.png", (186, 250))
    assert (
        main(
            [
                "preprocess",
                "--image",
                "odd",
                "--set",
                "model.preset=paper",
                "--set",
                "model.base_channels=null",
                "--set",
                "model.channel_mult=null",
                "--set",
                "model.groups=null",
                "--set",
                "preprocess.max_size=250",
            ]
        )
        == 0
    )
    meta = _meta(proj, "odd")
    assert meta["processed_size"] == [184, 248] and meta["receptive_field_px"] == 101


def test_exif_rotation_is_applied_before_resizing(proj):
    img = Image.new("RGB", (96, 64), (10, 200, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(proj / "data/images/phone.jpg", exif=exif.tobytes())
    assert main(["preprocess", "--image", "phone"]) == 0
    assert _meta(proj, "phone")["original_size"] == [96, 64]  # (H, W) as displayed
    assert Image.open(proj / "results/phone/preprocess/image.png").size == (32, 48)


def test_rerun_replaces_outputs(proj):
    assert main(["preprocess", "--image", "img"]) == 0
    first = (proj / "results/img/preprocess/image.png").read_bytes()
    write_image(proj / "data/images/img.png", seed=3)
    assert main(["preprocess", "--image", "img"]) == 0
    assert (proj / "results/img/preprocess/image.png").read_bytes() != first
    assert sorted(p.name for p in (proj / "results/img/preprocess").iterdir()) == ["image.json", "image.png"]


def test_stage_raises_before_writing(proj):
    (proj / "data/images/bad.png").write_text("nope")
    params = load_params("params.yaml")
    with pytest.raises(ImageError, match=r"data/images/bad\.png: not an image"):
        preprocess.run(params, "bad")
    with pytest.raises(ImageError, match="too small"):
        preprocess.run(params, "x", source=write_image(proj / "tiny.png", (20, 7)))
    assert not (proj / "results").exists()
