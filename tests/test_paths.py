"""paths: every artifact path spelled once; finding the raw image of a name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sindiffusion.paths import IMAGE_SUFFIXES, TEMPLATES, ImagePaths, find_source_image, list_images


def test_templates_are_per_image_and_under_results():
    assert {
        "processed",
        "processed_meta",
        "checkpoint",
        "resume",
        "loss",
        "train_metrics",
        "samples",
        "grid",
        "samples_meta",
    } <= set(TEMPLATES)
    for key, template in TEMPLATES.items():
        assert template.startswith("{results}/{image}/"), key
        assert set(re.findall(r"{(\w+)}", template)) == {"results", "image"}, key
    assert len(set(TEMPLATES.values())) == len(TEMPLATES)


def test_image_paths():
    p = ImagePaths(image="cows")
    assert p.processed == Path("results/cows/preprocess/image.png")
    assert p.checkpoint == Path("results/cows/train/model.pt")
    assert p.resume == Path("results/cows/train/resume/latest.pt")
    assert p.loss == Path("results/cows/train/loss.csv")
    assert p.samples == Path("results/cows/samples") and p.grid == p.samples / "grid.png"
    assert p.samples_meta == p.samples / "samples.json"
    q = ImagePaths(image="a_b", results=Path("/tmp/r"))
    assert q.train_metrics == Path("/tmp/r/a_b/train/metrics.json")
    for key in TEMPLATES:
        assert isinstance(getattr(q, key), Path)
    with pytest.raises(AttributeError):
        q.nonexistent  # noqa: B018
    assert ImagePaths("x") == ImagePaths("x", Path("results"))


def test_every_template_is_a_typed_attribute():
    """No lookup magic: each template is a declared attribute (typed ``Path``), and nothing else is."""
    declared = {k for k, v in vars(ImagePaths).items() if type(v).__name__ == "_Artifact"}
    assert declared == set(TEMPLATES)
    assert "__getattr__" not in vars(ImagePaths)


def _touch(d: Path, *names: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).write_bytes(b"x")


def test_find_source_image(tmp_path):
    _touch(tmp_path, "a.png", "b.JPG", "c.txt", "d.webp")
    assert find_source_image(tmp_path, "a") == tmp_path / "a.png"
    assert find_source_image(tmp_path, "b") == tmp_path / "b.JPG"  # suffixes are case-insensitive
    assert find_source_image(str(tmp_path), "d") == tmp_path / "d.webp"


def test_find_source_image_missing_lists_available(tmp_path):
    _touch(tmp_path, "a.png", "b.jpg", "c.txt")
    with pytest.raises(FileNotFoundError) as info:
        find_source_image(tmp_path, "c")  # not an image suffix
    msg = str(info.value)
    assert f"{tmp_path}/c.*" in msg and "images available: a, b" in msg
    with pytest.raises(FileNotFoundError, match=r"images available: none"):
        find_source_image(tmp_path / "empty", "a")


def test_find_source_image_ambiguous(tmp_path):
    _touch(tmp_path, "a.png", "a.jpg")
    with pytest.raises(FileNotFoundError, match=r"ambiguous.*a\.jpg.*a\.png"):
        find_source_image(tmp_path, "a")


def test_find_source_image_matches_the_exact_stem(tmp_path):
    _touch(tmp_path, "img.png", "img.backup.png", "x[1].png")
    assert find_source_image(tmp_path, "img") == tmp_path / "img.png"
    assert find_source_image(tmp_path, "x[1]") == tmp_path / "x[1].png"


def test_list_images(tmp_path):
    assert list_images(tmp_path / "missing") == []
    _touch(tmp_path, "b.png", "a.TIFF", "notes.txt", "c.gif", "README")
    (tmp_path / "sub.png").mkdir()
    _touch(tmp_path / "nested", "z.png")
    assert list_images(tmp_path) == ["a", "b", "c"]
    assert {".png", ".jpg", ".jpeg"} <= set(IMAGE_SUFFIXES)
