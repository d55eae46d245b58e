"""The ``symmetric`` application: one module (applications/kinds/symmetric.py), registered like every kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sindiffusion.applications.kinds.symmetric import MirrorHook, mirror
from sindiffusion.cli import main
from sindiffusion.diffusion import sample_loop
from tests.tiny import tiny_project


@pytest.mark.parametrize("axis,dim", [("vertical", -1), ("horizontal", -2)])
@pytest.mark.parametrize("n", [6, 7])
def test_mirror_copies_the_first_half(axis, dim, n):
    x = torch.randn(2, 3, n, n)
    y = mirror(x, axis)
    assert torch.equal(y, y.flip(dim))
    half = (n + 1) // 2
    assert torch.equal(y.narrow(dim, 0, half), x.narrow(dim, 0, half))


@pytest.mark.parametrize("axis,dim", [("vertical", -1), ("horizontal", -2)])
def test_the_loop_gives_exactly_symmetric_samples(unet, diffusion, ddim, axis, dim):
    x = sample_loop(
        unet, diffusion, ddim, (2, 3, 16, 24), hooks=[MirrorHook(axis)], generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(x, x.flip(dim)) and x.std() > 0.01


def test_one_off_command_writes_a_symmetric_result(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    monkeypatch.chdir(tmp_path)
    ckpt = tiny_checkpoint
    params = tiny_project(tmp_path, "manipulate", manipulate={"steps": 3}).params
    out = tmp_path / "sym"
    assert (
        main(
            [
                "symmetric",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--params",
                str(params),
                "--width",
                "40",
                "--num",
                "2",
                "--no-progress",
            ]
        )
        == 0
    ), capsys.readouterr().err
    pixels = np.asarray(Image.open(out / "result.png").convert("RGB"))
    assert pixels.shape[:2] == (32, 40) and np.array_equal(pixels, pixels[:, ::-1])
    meta = json.loads((out / "edit.json").read_text())
    assert meta["kind"] == "symmetric" and meta["options"]["axis"] == "vertical"
    assert meta["metrics"]["asymmetry_max_abs"] == 0.0
    with pytest.raises(SystemExit) as exit_info:  # argparse: the choices come from the options' Literal
        main(["symmetric", "--checkpoint", str(ckpt), "--out", str(out), "--params", str(params), "--axis", "diag"])
    assert exit_info.value.code == 2 and "'vertical', 'horizontal'" in capsys.readouterr().err
