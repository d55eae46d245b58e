"""LPIPS diversity. Tests use a RANDOM AlexNet backbone (``random_init=True``;
the LPIPS linear layers come from the lpips wheel): properties only."""

from __future__ import annotations

import pytest
import torch

from sindiffusion.evaluation import LPIPSAlex, MissingWeightsError, lpips_diversity, pairwise_lpips

from .helpers import smooth_image


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LPIPSAlex(random_init=True)


def test_identical_samples_have_zero_diversity(model):
    x = smooth_image(0, (64, 64)).repeat(4, 1, 1, 1)
    assert model.is_random
    assert lpips_diversity(x, model) == pytest.approx(0.0, abs=1e-6)


def test_different_samples_have_positive_diversity(model):
    xs = torch.cat([smooth_image(i, (64, 64)) for i in range(5)])
    d = pairwise_lpips(xs, model, batch_size=3)
    assert d.shape == (10,) and (d > 0).all()
    assert lpips_diversity(xs, model) == pytest.approx(float(d.mean()))
    # pair order follows itertools.combinations and LPIPS is symmetric
    assert float(d[0]) == pytest.approx(float(model(xs[1:2], xs[0:1])), rel=1e-5)


def test_normalisation_is_2x_minus_1(model):
    a, b = smooth_image(1, (64, 64)), smooth_image(2, (64, 64))
    direct = model.model(2 * a - 1, 2 * b - 1)
    assert float(model(a, b)) == pytest.approx(float(direct), rel=1e-5)


def test_needs_two_samples(model):
    with pytest.raises(ValueError, match="at least 2"):
        lpips_diversity(smooth_image(0, (64, 64)), model)


def test_missing_backbone_raises(no_weights):
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        LPIPSAlex(weights_dir=no_weights)


def test_backbone_keys_map_onto_lpips_slices(fake_weights_dir):
    """Random-valued checkpoint: checks the torchvision -> lpips key mapping only."""
    m = LPIPSAlex(weights_dir=fake_weights_dir)
    assert not m.is_random
    state = torch.load(m.weights_file, weights_only=True)
    net = m.model.net
    torch.testing.assert_close(net.slice1.get_submodule("0").weight, state["features.0.weight"])
    torch.testing.assert_close(net.slice2.get_submodule("3").weight, state["features.3.weight"])
    torch.testing.assert_close(net.slice5.get_submodule("10").bias, state["features.10.bias"])
