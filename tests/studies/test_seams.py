"""``sindiffusion seam-jump`` (studies/seams.py): the jump across the seams the sample stage records.

Measured on synthetic images: a straight cut between two unrelated halves scores far above 1, a
column of a smooth image about 1; folders without seams are skipped; bad records are exit 2 naming
the file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sindiffusion.cli import main
from sindiffusion.studies.seams import column_jumps, score_folder, score_tree, seam_jumps


def _two_textures(h: int = 32, w: int = 48, cut: int = 20, seed: int = 0) -> np.ndarray:
    """``[h, w]`` luma in [0, 1]: a smooth horizontal ramp, and a dark band right of ``cut``, so
    the only straight vertical cut is at column ``cut``."""
    rng = np.random.default_rng(seed)
    img = np.tile(np.linspace(0.3, 0.7, w), (h, 1)) + 0.02 * rng.standard_normal((h, w))
    img[:, cut:] -= 0.25
    return img.clip(0, 1)


def test_a_straight_cut_scores_far_above_one_and_an_ordinary_column_about_one():
    img = _two_textures()
    assert seam_jumps(img, [20])[0] > 5
    assert 0.3 < seam_jumps(img, [10])[0] < 2
    assert column_jumps(img).shape == (47,)
    with pytest.raises(ValueError, match="outside"):
        seam_jumps(img, [0])


def _samples_folder(folder: Path, seams: list | None, n: int = 2) -> Path:
    folder.mkdir(parents=True)
    files = []
    for i in range(n):
        name = f"sample_{i:03d}.png"
        Image.fromarray((_two_textures(seed=i) * 255).astype(np.uint8)).save(folder / name)
        files.append(name)
    (folder / "samples.json").write_text(json.dumps({"files": files, "seams": seams}))
    return folder


def test_folders_are_scored_from_their_samples_json_and_seamless_ones_skipped(tmp_path):
    a = _samples_folder(tmp_path / "run/a@1x2/1/samples", [[20], [20, 40]])
    _samples_folder(tmp_path / "run/b@1x1/1/samples", None)
    row = score_folder(a)
    assert row["samples"] == 2 and row["seams"] == 3 and row["jump_max"] > 5
    assert score_folder(tmp_path / "run/b@1x1/1/samples") is None
    assert [r["folder"] for r in score_tree([tmp_path / "run"])] == [str(a)]


def test_the_command_prints_and_writes_the_rows(tmp_path, capsys):
    _samples_folder(tmp_path / "run/a/samples", [[20], [10]])
    assert main(["seam-jump", str(tmp_path / "run"), "--csv", str(tmp_path / "seams.csv")]) == 0
    assert "jump_mean" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "seams.csv")))
    assert len(rows) == 1 and int(rows[0]["seams"]) == 2


def test_bad_folders_and_records_are_exit_2_naming_the_file(tmp_path, capsys):
    assert main(["seam-jump", str(tmp_path / "missing")]) == 2
    assert "missing: no such folder" in capsys.readouterr().err
    _samples_folder(tmp_path / "none/x", None)
    assert main(["seam-jump", str(tmp_path / "none")]) == 2
    assert "no samples with seams" in capsys.readouterr().err
    bad = _samples_folder(tmp_path / "bad/x", [[20]])  # two files, seams for one
    assert main(["seam-jump", str(tmp_path / "bad")]) == 2
    assert f"{bad / 'samples.json'}: 2 files but seams for 1 samples" in capsys.readouterr().err
    (bad / "sample_001.png").write_bytes(b"not a png")  # a corrupt sample: the checks every input image gets
    (bad / "samples.json").write_text(json.dumps({"files": ["sample_001.png"], "seams": [[20]]}))
    assert main(["seam-jump", str(tmp_path / "bad")]) == 2
    assert str(bad / "sample_001.png") in capsys.readouterr().err
    (bad / "samples.json").write_text("{")
    assert main(["seam-jump", str(bad)]) == 2
    assert "cannot read the samples' record" in capsys.readouterr().err
    assert main(["seam-jump", str(tmp_path / "none"), "--blur", "-1"]) == 2
