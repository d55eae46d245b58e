"""The sample command's smaller reliability issues (issue 9, item 6): a checkpoint of another image,
the folder it reports, and seeds whose samples never overlap."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from sindiffusion.checkpoint import load_checkpoint, save_checkpoint
from sindiffusion.cli import main
from tests.tiny import one_torch_thread  # noqa: F401


def _sample(*argv: str) -> int:
    return main(["sample", "--image", "img", "--no-progress", *argv])


def _pixels(folder: Path, i: int) -> np.ndarray:
    return np.asarray(Image.open(folder / f"sample_{i:03d}.png").convert("RGB")).astype(int)


def test_checkpoint_of_another_image_is_refused(trained_project, capsys):
    ckpt = load_checkpoint(trained_project / "results/img/train/model.pt")
    ckpt["image"]["name"] = "other"
    other = trained_project / "other.pt"
    save_checkpoint(other, {k: v for k, v in ckpt.items() if k not in ("format", "version")})
    assert _sample("--checkpoint", str(other)) == 2
    err = capsys.readouterr().err
    assert str(other) in err and "trained on image 'other'" in err and "not 'img'" in err
    assert not (trained_project / "results/img/samples").exists()


def test_reports_the_folder_it_wrote(trained_project, capsys):
    shutil.move(trained_project / "results", trained_project / "elsewhere")
    assert _sample("--num", "1", "--set", "data.results_dir=elsewhere") == 0
    out = capsys.readouterr().out
    assert "-> elsewhere/img/samples" in out and "results/" not in out
    assert (trained_project / "elsewhere/img/samples/sample_000.png").is_file()


def test_seeds_never_overlap_and_batch_size_does_not_matter(trained_project):
    runs = {"s0": ("0", "1"), "s1": ("1", "1"), "s0_batch3": ("0", "3")}
    for out, (seed, batch) in runs.items():
        assert _sample("--num", "3", "--seed", seed, "--set", f"sample.batch_size={batch}", "--out", out) == 0
    s0, s1, s0b3 = (trained_project / name for name in runs)
    for i in range(2):  # before: seed 1's sample i was seed 0's sample i + 1
        assert not np.array_equal(_pixels(s1, i), _pixels(s0, i + 1))
    for i in range(3):
        assert not np.array_equal(_pixels(s1, i), _pixels(s0, i))
        # the same sample whatever the batch size (batched convolutions may differ in the last bit)
        assert np.abs(_pixels(s0b3, i) - _pixels(s0, i)).max() <= 2
