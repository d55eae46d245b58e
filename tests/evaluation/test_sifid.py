"""SIFID. All deep-network tests here use a RANDOM Inception backbone
(``random_init=True``, no pretrained weights on CI): they check properties of
the metric, never its reported values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sindiffusion.evaluation import (
    SIFID_LAYERS,
    InceptionFeatures,
    MissingWeightsError,
    frechet_distance,
    gaussian_stats,
    sifid,
    sifid_metric_name,
    sifid_per_image,
)

from .helpers import smooth_image


@pytest.fixture(scope="module", params=sorted(SIFID_LAYERS))
def extractor(request):
    torch.manual_seed(0)
    return InceptionFeatures(request.param, random_init=True)


def test_frechet_distance_closed_form():
    assert frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(2.0)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 5))
    mu, s = a.mean(0), np.cov(a, rowvar=False)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8)


def test_gaussian_stats_positions_are_samples():
    f = torch.randn(1, 4, 6, 7, dtype=torch.float64)
    mu, s = gaussian_stats(f)
    flat = f[0].reshape(4, -1).T.numpy()
    np.testing.assert_allclose(mu, flat.mean(0))
    np.testing.assert_allclose(s, np.cov(flat, rowvar=False))


def test_extractor_layers_and_flags(extractor):
    x = smooth_image(0)
    feats = extractor(x)
    assert feats.shape[:2] == (1, SIFID_LAYERS[extractor.layer])
    assert extractor.is_random and extractor.weights_file is None
    assert sifid_metric_name(extractor.layer) == f"sifid_{extractor.layer}"
    extractor.train()
    assert not extractor.training


def test_sifid_zero_symmetric_and_grows_with_noise(extractor):
    x = smooth_image(1)
    assert sifid(x, x, extractor) == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    noisy = [(x + s * noise).clamp(0, 1) for s in (0.02, 0.1, 0.3)]
    values = sifid_per_image(x, torch.cat(noisy), extractor)
    assert 0 < values[0] < values[1] < values[2]
    y = smooth_image(2)
    xy, yx = sifid(x, y, extractor), sifid(y, x, extractor)
    assert xy > 0 and xy == pytest.approx(yx, rel=1e-4)


def test_fakes_may_differ_in_size(extractor):
    x = smooth_image(1)
    v = sifid_per_image(x, [smooth_image(3, (40, 56)), smooth_image(4, (64, 80))], extractor)
    assert len(v) == 2 and all(d > 0 for d in v)


def test_input_checks(extractor):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sifid(smooth_image(0) * 2 - 1, smooth_image(0), extractor)
    with pytest.raises(ValueError, match="shape"):
        sifid(torch.rand(1, 1, 32, 32), smooth_image(0), extractor)
    with pytest.raises(ValueError, match="unknown SIFID layer"):
        InceptionFeatures("pool3", random_init=True)


def test_missing_weights_raise(no_weights):
    with pytest.raises(MissingWeightsError, match="inception_v3_google-0cc3c7c2.pth"):
        InceptionFeatures("pool1", weights_dir=no_weights)


def test_loads_checkpoint_from_weights_dir(fake_weights_dir):
    """The checkpoint here holds random values: this checks the loading path only."""
    import torchvision

    ext = InceptionFeatures("pool2", weights_dir=fake_weights_dir)
    assert not ext.is_random and ext.weights_file.parent == fake_weights_dir
    ref = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    ref.load_state_dict(torch.load(ext.weights_file, weights_only=True))
    x = smooth_image(5)
    with torch.no_grad():
        h = 2 * x - 1  # SinGAN's normalisation
        for m in (
            ref.Conv2d_1a_3x3,
            ref.Conv2d_2a_3x3,
            ref.Conv2d_2b_3x3,
            ref.maxpool1,
            ref.Conv2d_3b_1x1,
            ref.Conv2d_4a_3x3,
        ):
            h = m(h)
    torch.testing.assert_close(ext(x), h)
