"""Fixtures for the evaluation tests.

Deep-metric tests use RANDOM backbones (no pretrained weights exist on CI
machines); they check properties (zero on identical inputs, symmetry,
monotonicity), never reported values. Real-image tests read
``<repo>/../shared/data`` and skip when it is absent (a user's clone lacks it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .helpers import DATA_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` next to the repository; skips when absent."""
    if not (DATA_DIR / "places50").is_dir():
        pytest.skip(f"real test images not found: {DATA_DIR} is absent (only on the development machines)")
    return DATA_DIR


@pytest.fixture
def no_weights(tmp_path, monkeypatch) -> Path:
    """An empty weights dir, with TORCH_HOME pointing at an empty tmp dir too."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    d = tmp_path / "weights"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def fake_weights_dir(tmp_path_factory) -> Path:
    """A weights dir holding correctly named checkpoints with RANDOM values.

    Exercises the loading code (file lookup, key mapping, strict loading)
    without the real downloads. Numbers computed from it mean nothing.
    """
    import torchvision

    d = tmp_path_factory.mktemp("fake_weights")
    torch.manual_seed(0)
    inc = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    torch.save(inc.state_dict(), d / "inception_v3_google-0cc3c7c2.pth")
    features = torchvision.models.alexnet(weights=None).features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(2, 2)  # real file has the classifier too: must be ignored
    torch.save(state, d / "alexnet-owt-7be5be79.pth")
    return d
