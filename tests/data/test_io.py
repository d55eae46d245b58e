"""load_image: every input mode Pillow reads becomes 8-bit RGB; bad files raise ImageError naming the file."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sindiffusion.artifacts import atomic_write
from sindiffusion.data.io import (
    ImageError,
    image_to_tensor,
    load_image,
    make_grid,
    save_image,
    tensor_to_image,
)


def _rgb(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def test_rgb_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    arr = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.size == (30, 20)
    np.testing.assert_array_equal(np.asarray(out), arr)


def test_rgba_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (10, 8), (255, 0, 0, 255))
    img.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black -> white
    img.putpixel((1, 0), (0, 0, 255, 128))  # half-transparent blue -> light blue
    img.save(tmp_path / "a.png")
    out = _rgb(load_image(tmp_path / "a.png"))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, 2]) == (255, 0, 0)
    r, g, b = out[0, 1]
    assert abs(r - 127) <= 2 and abs(g - 127) <= 2 and b == 255


def test_greyscale_L(tmp_path):
    arr = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (6, 1))
    Image.fromarray(arr, mode="L").save(tmp_path / "g.png")
    out = _rgb(load_image(tmp_path / "g.png"))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], arr)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (6, 4), 1)
    img.putpalette([0, 255, 0] + [200, 10, 10] + [0, 0, 0] * 254)
    img.putpixel((0, 0), 0)
    img.info["transparency"] = 0  # palette index 0 (green) is transparent
    img.save(tmp_path / "p.png", transparency=0)
    reopened = Image.open(tmp_path / "p.png")
    assert reopened.mode == "P" and "transparency" in reopened.info
    out = _rgb(load_image(tmp_path / "p.png"))
    assert tuple(out[0, 0]) == (255, 255, 255)  # transparent: white, not green
    assert tuple(out[1, 1]) == (200, 10, 10)


def test_16bit_png_is_scaled(tmp_path):
    arr = np.array([[0, 257 * 128, 65535, 257 * 10]], dtype=np.uint16).repeat(3, axis=0)
    Image.fromarray(arr).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = _rgb(load_image(tmp_path / "d.png"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255, 10])
    assert (out[..., 0] == out[..., 2]).all()


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (16, 16), (0, 0, 0, 0))  # no ink: white
    for x in range(8, 16):
        for y in range(16):
            img.putpixel((x, y), (255, 0, 0, 0))  # full cyan
    img.save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = _rgb(load_image(tmp_path / "c.jpg"))
    assert (np.abs(out[4, 2] - [255, 255, 255]) <= 8).all()
    assert (np.abs(out[4, 12] - [0, 255, 255]) <= 8).all()


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 high, red on the left half; orientation 6 = rotate 90° clockwise to display.
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(tmp_path / "r.jpg")
    assert out.size == (20, 40)  # width and height swapped
    arr = _rgb(out)
    assert arr[5, 10, 0] > 200 and arr[5, 10, 2] < 60  # the stored left (red) is now on top
    assert arr[35, 10, 2] > 200 and arr[35, 10, 0] < 60


# ------------------------------------------------------------------ bad inputs
def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height but carries no pixel data (cheap decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _noise(path: Path, size=(48, 40), **save) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path, **save)
    return path


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a word the error message must contain). Shared with the CLI tests."""
    text = tmp_path / "text.png"
    text.write_text("this is not an image\n")
    png = _noise(tmp_path / "full.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(png[: len(png) // 2])
    jpg = _noise(tmp_path / "full.jpg", quality=90).read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(jpg[: len(jpg) // 2])
    (tmp_path / "bomb.png").write_bytes(_png_header(200_000, 100_000))
    (tmp_path / "empty.png").write_bytes(b"")
    return {
        "missing": (tmp_path / "missing.png", "not found"),
        "text": (text, "not an image"),
        "empty": (tmp_path / "empty.png", "not an image"),
        "truncated_png": (tmp_path / "trunc.png", "truncated"),
        "truncated_jpg": (tmp_path / "trunc.jpg", "truncated"),
        "bomb": (tmp_path / "bomb.png", "decompression bomb"),
    }


@pytest.mark.parametrize("case", ["missing", "text", "empty", "truncated_png", "truncated_jpg", "bomb"])
def test_bad_input_raises_image_error_naming_file(tmp_path, case):
    path, word = bad_inputs(tmp_path)[case]
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert word in str(info.value)


@pytest.mark.parametrize("case", ["truncated_png", "truncated_jpg"])
def test_truncated_is_an_error_even_if_pillow_is_told_to_load_truncated(tmp_path, monkeypatch, case):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some libraries set it globally
    path, _ = bad_inputs(tmp_path)[case]
    with pytest.raises(ImageError, match="truncated"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_directory_is_not_an_image(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path / "d.png")


def test_pixel_limit_is_configurable(tmp_path):
    path = _noise(tmp_path / "a.png", size=(48, 40))
    with pytest.raises(ImageError, match="1920 pixels exceeds the limit of 1000"):
        load_image(path, max_pixels=1000)
    assert load_image(path, max_pixels=1920).size == (48, 40)
    assert load_image(path, max_pixels=None).size == (48, 40)


def test_bomb_allowed_without_limit_still_fails_cleanly(tmp_path):
    # With no pixel limit the fake header is decoded and found to carry no data: still an ImageError.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(300, 200))
    with pytest.raises(ImageError, match=str(path)):
        load_image(path, max_pixels=None)


def test_pillow_global_limit_restored(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    load_image(_noise(tmp_path / "a.png"))
    with pytest.raises(ImageError):
        load_image(bad_inputs(tmp_path)["bomb"][0])
    assert Image.MAX_IMAGE_PIXELS == before


# ------------------------------------------------------------------ tensors and writing
def test_tensor_roundtrip_and_range():
    rng = np.random.default_rng(2)
    arr = (rng.random((9, 11, 3)) * 255).astype(np.uint8)
    x = image_to_tensor(Image.fromarray(arr))
    assert x.shape == (3, 9, 11) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_array_equal(np.asarray(tensor_to_image(x)), arr)
    np.testing.assert_array_equal(np.asarray(tensor_to_image(x[None])), arr)
    with pytest.raises(ValueError):
        tensor_to_image(torch.zeros(2, 3, 4, 4))


def test_save_image_atomic_and_grid(tmp_path):
    x = torch.rand(3, 3, 10, 14) * 2 - 1
    grid = make_grid(x, ncols=2, pad=2)
    assert grid.shape == (3, 2 * 12 + 2, 2 * 16 + 2)
    save_image(grid, tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").size == (34, 26)

    target = tmp_path / "keep.txt"
    target.write_text("old")

    def boom(tmp: Path) -> None:
        tmp.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "keep.txt"]
