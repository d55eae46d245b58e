"""Contact sheets: one labelled row per training image / arm / baseline."""

from __future__ import annotations

from PIL import Image

from sindiffusion.benchmark.sheets import LABEL_W, PAD, PER_ARM, image_sheet
from tests.tiny import write_image


def test_sheet_rows_heights_and_baseline_resize(tmp_path):
    train = write_image(tmp_path / "train.png", (24, 32), seed=0, texture="noise")
    wide = [write_image(tmp_path / f"s{i}.png", (24, 48), seed=i, texture="noise") for i in range(6)]
    # another size: shown at the training size
    base = write_image(tmp_path / "singan.png", (48, 64), seed=9, texture="noise")
    path = image_sheet("1", train, [("unet", wide), ("patch", wide[:1])], [("SinGAN", base)], tmp_path / "s.png")
    sheet = Image.open(path)
    assert sheet.height == 4 * (24 + PAD) + PAD  # training, unet, patch, SinGAN
    assert sheet.width == LABEL_W + PER_ARM * (48 + PAD) + PAD  # widest row: 4 of 6 samples, aspect kept
    row = lambda r: sheet.crop((LABEL_W, PAD + r * (24 + PAD), LABEL_W + 32, PAD + r * (24 + PAD) + 24))
    assert row(0).tobytes() == Image.open(train).convert("RGB").tobytes()
    assert row(3).getbbox() is not None and sheet.getpixel((LABEL_W + 32 + PAD + 1, 3 * (24 + PAD) + PAD + 1)) == (
        255,
        255,
        255,
    )  # the baseline is as wide as the training image, then white
