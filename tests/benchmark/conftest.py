"""Fixtures of the benchmark tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny import cli, make_bench, write_params


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """:func:`tests.tiny.make_bench` in ``tmp_path``, with no pretrained weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return make_bench(tmp_path)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """Once per module, in a :func:`tests.tiny.make_bench` folder: run ``A``, the default arm on images 1-2;
    run ``B``, arm ``fewer`` (2 training steps) on images 1-3. Tests write only outside it."""
    root = make_bench(tmp_path_factory.mktemp("two_runs"))
    params = write_params(root, "pipeline", train={"steps": 4}, sample={"steps": 3}, tracking={"enabled": False})
    common = ["--params", params, "--images-dir", root / "images", "--baselines", root / "baselines", "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(root / "torch_home"))
        assert cli("benchmark", *common, "--images", "1-2", "--out", root / "A") == 0
        fewer = ["--arm", f"fewer={params}:train.steps=2"]
        assert cli("benchmark", *common, "--images", "1-3", "--out", root / "B", *fewer) == 0
    return root
