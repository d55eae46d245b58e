"""Shared pytest configuration: the tiny fixtures (``tiny_unet``, ``smooth``, ``tiny_checkpoint``,
``tiny_trained``, ``trained_project``), all built by :mod:`tests.tiny`, the one tiny-project builder;
fixtures for real services live in tests/support/."""

import os
import shutil
from pathlib import Path

import pytest

# Tests never talk to a user's MLflow server or write ./mlflow.db unless they ask for it.
os.environ.setdefault("SINDIFFUSION_TRACKING", "off")

from tests.tiny import TINY_UNET, make_checkpoint, smooth_image, tiny_project  # noqa: E402  (after the environment)

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(scope="session")
def tiny_unet():
    """The tiny UNet config (:data:`tests.tiny.TINY_UNET`)."""
    return TINY_UNET


@pytest.fixture
def smooth():
    """:func:`tests.tiny.smooth_image`: ``smooth(seed, height=32, width=None, batch=1)`` -> ``[B, 3, H, W]``."""
    return smooth_image


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny trained checkpoint of image ``img`` in a session folder (:func:`tests.tiny.make_checkpoint`)."""
    return make_checkpoint(tmp_path_factory.mktemp("tiny_checkpoint"), "img")


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory) -> Path:
    """A tiny project (:func:`tests.tiny.tiny_project`) with image ``img`` preprocessed and trained 4 steps:
    ``results/img/train/model.pt``, ``resume/latest.pt``, ``loss.csv``. Read-only: copy it with
    the ``trained_project`` fixture."""
    # why: torch and the CLI load only for the tests that train (start-up time of the others)
    import torch

    from sindiffusion.cli import main

    root = tmp_path_factory.mktemp("tiny_trained")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        tiny_project(root, train={"steps": 4})
        assert main(["preprocess", "--image", "img"]) == 0
        assert main(["train", "--image", "img", "--no-progress"]) == 0
    torch.set_num_threads(threads)
    return root


@pytest.fixture
def trained_project(tiny_trained, tmp_path, monkeypatch) -> Path:
    """A fresh copy of :func:`tiny_trained` in ``tmp_path``, as the working directory."""
    shutil.copytree(tiny_trained, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path
