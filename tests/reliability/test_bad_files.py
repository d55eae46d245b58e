"""Bad input files (issue 9): every command refuses an unusable checkpoint or source image with
exit status 2, a message naming the file, and nothing written."""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sindiffusion.cli import main
from tests.tiny import edit_params, one_torch_thread  # noqa: F401


class _Payload:
    """Pickled code: ``torch.load(weights_only=True)`` must refuse to run it."""

    def __reduce__(self):
        return (print, ("this ran",))


def _bad_checkpoint(root: Path, kind: str) -> Path:
    path = root / f"bad-{kind}.pt"
    model = (root / "results/img/train/model.pt").read_bytes()
    if kind == "missing":
        return path
    path.write_bytes(
        {
            "empty": b"",
            "text": b"not a checkpoint\n",
            "truncated": model[: len(model) // 2],
            "image": (root / "results/img/preprocess/image.png").read_bytes(),
            "pickled-code": pickle.dumps({"format": "sindiffusion-checkpoint", "x": _Payload()}),
        }[kind]
    )
    return path


CHECKPOINTS = ["missing", "empty", "text", "truncated", "image", "pickled-code"]
COMMANDS = {
    "sample": ["sample", "--image", "img"],
    "manipulate": ["manipulate", "--image", "img"],
    "outpaint": ["outpaint", "--left", "8", "--out", "edited"],
    "resize": ["resize", "--width", "64", "--out", "edited"],
}


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("command", COMMANDS)
def test_unusable_checkpoints_are_refused(trained_project, capsys, command):
    root = trained_project
    if command == "manipulate":  # the stage reads the checkpoint only when the image has edits
        edits = {"img": [{"name": "wide", "kind": "outpaint", "left": 8}]}
        edit_params(root / "params.yaml", replace={"manipulate": {"edits": edits}})
    paths = {kind: _bad_checkpoint(root, kind) for kind in CHECKPOINTS}
    before = _tree(root)
    for kind, path in paths.items():
        assert _exit_code([*COMMANDS[command], "--checkpoint", str(path), "--no-progress"]) == 2, kind
        captured = capsys.readouterr()
        assert str(path) in captured.err and "Traceback" not in captured.err, (kind, captured.err)
        assert "this ran" not in captured.out, kind
        assert _tree(root) == before, kind


@pytest.mark.parametrize("content", ["missing", "empty", "text", "truncated-png"])
def test_unusable_source_images_are_refused(trained_project, capsys, content):
    root = trained_project
    source = root / "upload.png"
    good = (root / "data/images/img.png").read_bytes()
    if content != "missing":
        source.write_bytes({"empty": b"", "text": b"hello\n", "truncated-png": good[: len(good) // 2]}[content])
    before = _tree(root)
    assert _exit_code(["preprocess", "--image", "new", "--source", str(source)]) == 2
    err = capsys.readouterr().err
    assert str(source) in err and "Traceback" not in err, err
    assert _tree(root) == before


def _png_claiming(good: bytes, width: int, height: int) -> bytes:
    """``good`` (a PNG) with its header claiming ``width`` x ``height`` (a decompression bomb's header)."""
    ihdr = good[12:29]  # chunk type + 13 bytes of data
    ihdr = ihdr[:4] + struct.pack(">II", width, height) + ihdr[12:]
    return good[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + good[33:]


@pytest.mark.parametrize("content", ["truncated", "bomb", "text", "empty"])
def test_unusable_masks_are_refused_like_images(trained_project, capsys, content):
    """A mask goes through the image checks (issue 28, item 10): exit 2 naming the mask file."""
    root = trained_project
    noise = np.random.default_rng(0).integers(0, 2, (40, 48), dtype=np.uint8) * 255
    Image.fromarray(noise).save(root / "good-mask.png")
    good = (root / "good-mask.png").read_bytes()
    mask = root / "mask.png"
    mask.write_bytes(
        {
            "truncated": good[: len(good) // 2],
            "bomb": _png_claiming(good, 20_000, 20_000),
            "text": b"not an image\n",
            "empty": b"",
        }[content]
    )
    before = _tree(root)
    argv = ["inpaint", "--mask", str(mask), "--checkpoint", "results/img/train/model.pt", "--out", "edited"]
    assert _exit_code([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(mask) in err and "Traceback" not in err and "failed:" not in err, err
    assert _tree(root) == before


def test_a_full_disk_names_the_file_and_says_the_disk_is_full(trained_project, capsys, monkeypatch):
    """Checkpoints written onto a full disk (their temporary files lead to /dev/full, which answers
    every write with ENOSPC): the message names the checkpoint and says the disk is full, not torch's
    ``unexpected pos``; the earlier model.pt stays, and no temporary file is left."""
    import os
    import tempfile
    import types

    from sindiffusion import artifacts

    def full_mkstemp(*args, **kwargs):
        fd, name = tempfile.mkstemp(*args, **kwargs)
        if name.endswith(".pt"):
            os.unlink(name)
            os.symlink("/dev/full", name)
        return fd, name

    monkeypatch.setattr(artifacts, "tempfile", types.SimpleNamespace(mkstemp=full_mkstemp, mkdtemp=tempfile.mkdtemp))
    model = trained_project / "results/img/train/model.pt"
    before = model.read_bytes()
    rc = main(["train", "--image", "img", "--no-progress", "--set", "train.steps=6"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "results/img/train/" in err and ".pt" in err and "disk is full" in err, err
    assert "unexpected pos" not in err and "Traceback" not in err, err
    assert model.read_bytes() == before
    train = trained_project / "results/img/train"
    assert not [p for p in train.rglob(".*") if p.is_symlink() or ".tmp" in p.name]
