"""Contact sheets: one PNG per image so a person can look at what the numbers describe.

Rows, each labelled on the left: the training image; up to :data:`PER_ARM` samples of every
arm; the published sample of every baseline method (resized to the training image's size, as
it is scored). Every picture is scaled to the training image's height (aspect kept: samples
wider than the training image stay wider).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..artifacts import atomic_write

PER_ARM = 4
LABEL_W = 190
PAD = 4


def _fit(img: Image.Image, height: int) -> Image.Image:
    w = max(1, round(img.width * height / img.height))
    return img.convert("RGB").resize((w, height), Image.Resampling.BICUBIC)


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[Path | Image.Image]]], path: str | Path, height: int | None = None
) -> Path:
    """Write one sheet: ``rows`` = ``[(label, [image file or PIL image, ...]), ...]``, the first row's
    first picture sets the height (or ``height``). Rows without pictures show their label only."""
    opened = [(label, [p if isinstance(p, Image.Image) else Image.open(p) for p in pics]) for label, pics in rows]
    first = next((pics[0] for _, pics in opened if pics), None)
    if first is None:
        raise ValueError(f"{path}: a contact sheet needs at least one picture")
    h = height or first.height
    fitted = [(label, [_fit(p, h) for p in pics]) for label, pics in opened]
    width = LABEL_W + max(sum(p.width + PAD for p in pics) for _, pics in fitted) + PAD
    sheet = Image.new("RGB", (width, len(fitted) * (h + PAD) + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)  # Pillow's bundled font: readable on 128-250 px rows
    for r, (label, pics) in enumerate(fitted):
        y = PAD + r * (h + PAD)
        draw.text((PAD, y + h // 2 - 8), label[:24], fill="black", font=font)
        x = LABEL_W
        for p in pics:
            sheet.paste(p, (x, y))
            x += p.width + PAD
    return atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))


def image_sheet(
    image: str,
    training: Path,
    arm_samples: Sequence[tuple[str, Sequence[Path]]],
    baselines: Sequence[tuple[str, Path]],
    path: str | Path,
) -> Path:
    """The benchmark's sheet of ``image``: training image, ``PER_ARM`` samples per arm, baselines
    resized to the training image's size."""
    train = Image.open(training).convert("RGB")
    rows: list[tuple[str, Sequence[Path | Image.Image]]] = [(f"training {image}", [train])]
    rows += [(arm, list(files)[:PER_ARM]) for arm, files in arm_samples]
    rows += [
        (method, [Image.open(f).convert("RGB").resize(train.size, Image.Resampling.BICUBIC)]) for method, f in baselines
    ]
    return contact_sheet(rows, path, height=train.height)
