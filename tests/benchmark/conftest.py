"""Fixtures of the benchmark tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.evaluation.tiny_pipeline import cli, write_image, write_params


def make_bench(root: Path) -> Path:
    """Three images (1, 2, 3) and a baselines folder (SinGAN for 1 and 2, GPNN = a copy of 1) under ``root``."""
    for i in (1, 2, 3):
        write_image(root / "images" / f"{i}.jpg", seed=i)
    write_image(root / "baselines" / "singan" / "1.png", seed=11)
    write_image(root / "baselines" / "singan" / "2.png", seed=12, size=(80, 112))  # resized to the training size
    (root / "baselines" / "gpnn").mkdir()
    shutil.copy(root / "images" / "1.jpg", root / "baselines" / "gpnn" / "1.jpg")
    return root


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """:func:`make_bench` in ``tmp_path``, with no pretrained weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return make_bench(tmp_path)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """Once per module, in a :func:`make_bench` folder: run ``A``, the default arm on images 1-2;
    run ``B``, arm ``fewer`` (2 training steps) on images 1-3. Tests write only outside it."""
    root = make_bench(tmp_path_factory.mktemp("two_runs"))
    params = write_params(root, steps=4, sample_steps=3, tracking=False)
    common = ["--params", params, "--images-dir", root / "images", "--baselines", root / "baselines", "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(root / "torch_home"))
        assert cli("benchmark", *common, "--images", "1-2", "--out", root / "A") == 0
        fewer = ["--arm", f"fewer={params}:train.steps=2"]
        assert cli("benchmark", *common, "--images", "1-3", "--out", root / "B", *fewer) == 0
    return root
