"""``sindiffusion denoise-gap``: a trained UNet against the closed-form patch denoiser, per noise level."""

from __future__ import annotations

import csv
import json

from sindiffusion.cli import main
from tests.stages.test_patch_kind import trained  # noqa: F401  (fixture: a patch-kind project)
from tests.tiny import write_params_file


def test_curve_files_and_values(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_params_file(tmp_path / "params.yaml", {"tracking": {"enabled": False}})
    out = tmp_path / "gap"
    assert main(["denoise-gap", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--points", "5"]) == 0
    rows = list(csv.DictReader(open(out / "denoise_gap.csv")))
    assert [int(r["t"]) for r in rows] == [0, 25, 50, 74, 99]  # the tiny diffusion has T = 100
    first, last = rows[0], rows[-1]
    assert float(first["rmse_closed"]) < 1e-3  # at t = 0 the closed form returns the training image
    assert float(last["rmse_closed"]) > float(first["rmse_closed"])
    assert all(float(r["rmse_gap"]) >= 0 for r in rows)
    assert json.loads((out / "denoise_gap.json").read_text())["image"] == "img"
    assert (out / "denoise_gap.png").stat().st_size > 0
    assert "UNet-vs-closed" in capsys.readouterr().out


def test_a_patch_checkpoint_is_refused(trained, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    write_params_file(tmp_path / "params.yaml", {"tracking": {"enabled": False}})
    ckpt = trained / "results" / "img" / "train" / "model.pt"
    assert main(["denoise-gap", "--checkpoint", str(ckpt), "--out", str(tmp_path / "gap")]) == 2
    assert "model.kind='patch'" in capsys.readouterr().err
    assert not (tmp_path / "gap").exists()
