"""evaluate_samples, the random-backbone guard and the metrics writer.

Deep metrics here run only on RANDOM backbones or on random-valued fake
checkpoints (no pretrained weights on CI); the tests check plumbing and
guards, never metric values.
"""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from sindiffusion.evaluation import (
    RANDOM_FLAG,
    InceptionFeatures,
    LPIPSAlex,
    RandomWeightsError,
    assert_reportable,
    evaluate_samples,
    load_deep_models,
    write_metrics_json,
)

from .helpers import smooth_image

WEIGHT_FREE = ("pixel_diversity", "copy_nn_dist", "copy_fraction", "patch_swd")


@pytest.fixture(scope="module")
def images():
    real = smooth_image(0, (48, 64))
    fakes = torch.cat([smooth_image(i, (48, 64)) for i in range(1, 4)])
    return real, fakes


def test_missing_weights_give_weight_free_metrics_and_reasons(images, no_weights, caplog):
    real, fakes = images
    with caplog.at_level(logging.WARNING, logger="sindiffusion.evaluation"):
        m = evaluate_samples(real, fakes, sifid_layers=("pool1", "pool2"), weights_dir=no_weights)
    for key in WEIGHT_FREE:
        assert isinstance(m[key], float) and math.isfinite(m[key])
    assert m["num_samples"] == 3
    for key, fname in [
        ("sifid_pool1", "inception_v3_google-0cc3c7c2.pth"),
        ("sifid_pool2", "inception_v3_google-0cc3c7c2.pth"),
        ("lpips_diversity", "alexnet-owt-7be5be79.pth"),
    ]:
        assert m[key] is None
        reason = m["unavailable"][key]
        assert fname in reason and "https://download.pytorch.org/models/" + fname in reason
        assert str(no_weights / fname) in reason
    assert RANDOM_FLAG not in m
    assert "unavailable" in caplog.text and "inception_v3_google-0cc3c7c2.pth" in caplog.text


def test_missing_weights_in_default_torch_home(images, no_weights, tmp_path):
    m = evaluate_samples(*images)  # weights_dir=None: looks in $TORCH_HOME/hub/checkpoints (empty)
    assert m["sifid_pool1"] is None and m["lpips_diversity"] is None
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in m["unavailable"]["sifid_pool1"]
    out = write_metrics_json(tmp_path / "m.json", m)  # reportable: None, not 0, and no random numbers
    assert json.loads(out.read_text())["sifid_pool1"] is None


def test_deep_false_skips_deep_metrics(images):
    m = evaluate_samples(*images, deep=False)
    assert set(WEIGHT_FREE) <= set(m) and "sifid_pool1" not in m and m["unavailable"] == {}


def test_single_sample(images, no_weights):
    real, fakes = images
    m = evaluate_samples(real, fakes[:1], deep=False)
    assert m["pixel_diversity"] is None and "pixel_diversity" in m["unavailable"]


def test_random_backbones_are_flagged_and_refused_by_writer(images, no_weights, tmp_path):
    real, fakes = images
    m = evaluate_samples(real, fakes, weights_dir=no_weights, allow_random_weights=True)
    assert m[RANDOM_FLAG] is True
    assert "sifid_pool1" not in m and "lpips_diversity" not in m
    assert m["sifid_pool1_random_weights"] >= 0 and m["lpips_diversity_random_weights"] > 0
    path = tmp_path / "out" / "metrics.json"
    with pytest.raises(RandomWeightsError):
        write_metrics_json(path, m)
    assert not path.parent.exists()  # refused before anything was written
    # stripping the flag alone does not launder the numbers
    with pytest.raises(RandomWeightsError):
        write_metrics_json(path, {k: v for k, v in m.items() if k != RANDOM_FLAG})
    with pytest.raises(RandomWeightsError):
        assert_reportable(m)
    assert_reportable(m, allow_random_weights=True)


def test_random_models_without_permission_never_reach_the_dict(images):
    torch.manual_seed(0)
    models = {
        "sifid_pool1": InceptionFeatures("pool1", random_init=True),
        "lpips_diversity": LPIPSAlex(random_init=True),
    }
    with pytest.raises(RandomWeightsError):
        evaluate_samples(*images, models=models)


def test_assert_reportable_checks_extractors():
    rnd = InceptionFeatures("pool1", random_init=True)
    with pytest.raises(RandomWeightsError):
        assert_reportable({"sifid_pool1": 0.1}, {"sifid_pool1": rnd})
    with pytest.raises(RandomWeightsError):  # unknown provenance counts as random
        assert_reportable({"sifid_pool1": 0.1}, {"sifid_pool1": torch.nn.Identity()})
    assert_reportable({"sifid_pool1": None}, {"sifid_pool1": rnd})
    with pytest.raises(RandomWeightsError):
        assert_reportable({"per_image": [{"sifid_pool1_random_weights": 0.1}]})


def test_loaded_checkpoints_give_plain_keys(images, fake_weights_dir, tmp_path):
    """Random-valued checkpoints under the right names: checks the loading path only."""
    models, unavailable = load_deep_models(("pool1",), weights_dir=fake_weights_dir)
    assert unavailable == {} and not any(m.is_random for m in models.values())
    m = evaluate_samples(*images, models=models)
    assert isinstance(m["sifid_pool1"], float) and isinstance(m["lpips_diversity"], float)
    assert RANDOM_FLAG not in m and m["unavailable"] == {}
    write_metrics_json(tmp_path / "ok.json", m)


def test_write_metrics_json_atomic_and_strict(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    write_metrics_json(path, {"a": torch.tensor(0.5), "b": None, "n": 3})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": None, "n": 3}
    write_metrics_json(path, {"a": 1.0})
    assert json.loads(path.read_text()) == {"a": 1.0}
    with pytest.raises(ValueError, match="non-finite"):
        write_metrics_json(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1.0}  # old file intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]  # no temp files left
