"""Contract tests run for every registered metric (a new metric module is checked here automatically).

Metrics that need pretrained weights run on RANDOM networks (``random_init=True``): the tests check
the plumbing (keys, networks, unavailable reasons, the random-backbone guard), never their values.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sindiffusion.config import EvaluateConfig
from sindiffusion.evaluation import RANDOM_FLAG, RANDOM_SUFFIX, MissingWeightsError, evaluate_samples, load_deep_models
from sindiffusion.evaluation.registry import (
    METRICS,
    Metric,
    metric_keys,
    metrics,
    metrics_table,
    run_metrics,
    weight_free_keys,
)
from sindiffusion.evaluation.weights import WEIGHTS

from .helpers import smooth_image

DOCS = Path(__file__).resolve().parents[2] / "docs" / "benchmark.md"
CFG = EvaluateConfig()
SIZE = (32, 48)


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return smooth_image(0, SIZE), torch.cat([smooth_image(i, SIZE) for i in range(1, n + 1)])


@pytest.fixture(scope="module", params=METRICS.names())
def metric(request) -> Metric:
    return METRICS.get(request.param)


@pytest.fixture(scope="module")
def all_nets() -> dict[str, torch.nn.Module]:
    """Random networks of every key under the default settings."""
    torch.manual_seed(0)
    return {key: build(random_init=True) for m in metrics() for key, build in m.networks(CFG).items()}


@pytest.fixture(scope="module")
def nets(metric, all_nets) -> dict[str, torch.nn.Module]:
    """The metric's networks (empty for weight-free metrics)."""
    return {key: all_nets[key] for key in metric.networks(CFG)}


@pytest.fixture(scope="module")
def one_sample(all_nets):
    """``run_metrics`` of every metric on one sample: ``(values, unavailable, used)``."""
    return run_metrics(*_images(1), CFG, all_nets)


@pytest.fixture(scope="module")
def evaluated(all_nets) -> dict:
    """``evaluate_samples`` of three samples with every (random) network."""
    return evaluate_samples(*_images(3), models=all_nets, allow_random_weights=True)


class TestMetricContract:
    def test_declares_its_keys_title_and_place(self, metric):
        assert metric.name and metric.title and metric.help
        assert metric.keys(CFG) and set(metric.keys(CFG)) <= set(metric.all_keys())
        assert [m for m in metrics() if m.rank == metric.rank] == [metric]  # one column position each
        assert metric.min_samples >= 1

    def test_returns_finite_numbers_under_its_keys(self, metric, nets):
        values = metric.compute(*_images(3), CFG, nets)
        assert set(values) == set(metric.keys(CFG))
        assert all(isinstance(v, float) and math.isfinite(v) for v in values.values())

    def test_is_deterministic_and_depends_on_the_samples(self, metric, nets):
        real, fakes = _images(3)
        first = metric.compute(real, fakes, CFG, nets)
        assert first == metric.compute(real, fakes, CFG, nets)
        # other samples: flipped and darkened, and copies of the training image with a little noise
        # (a ratio like stretch ignores the first, a threshold like coverage may score both 0)
        noise = 0.02 * torch.randn(fakes.shape, generator=torch.Generator().manual_seed(0))
        copies = (real.expand_as(fakes) + noise).clamp(0, 1)
        others = [metric.compute(real, fakes.flip(-1) * 0.5, CFG, nets), metric.compute(real, copies, CFG, nets)]
        assert any(first != other for other in others), others

    def test_too_few_samples_is_a_value_or_a_reason(self, metric, one_sample):
        values, unavailable, _ = one_sample
        for key in metric.keys(CFG):
            if metric.min_samples > 1:
                assert values[key] is None and unavailable[key] == f"needs at least {metric.min_samples} samples"
            else:
                assert math.isfinite(values[key]) and key not in unavailable

    def test_evaluate_samples_reports_it(self, metric, evaluated):
        keys = metric.keys(CFG)
        if not metric.weights:
            assert set(keys) <= set(metric_keys(CFG, deep=False))  # computed also with deep=False
            assert all(math.isfinite(evaluated[k]) for k in keys)
            return
        assert not set(keys) & set(metric_keys(CFG, deep=False))  # deep=False skips it
        assert evaluated[RANDOM_FLAG] and all(math.isfinite(evaluated[k + RANDOM_SUFFIX]) for k in keys)

    def test_its_weights_are_declared_and_their_absence_is_a_reason(self, metric, tmp_path, monkeypatch):
        if not metric.weights:
            assert metric.networks(CFG) == {}
            return
        assert set(metric.networks(CFG)) == set(metric.keys(CFG))
        for name in metric.weights:
            assert name in WEIGHTS and metric.title in WEIGHTS[name].used_by  # `weights status` names it
            with pytest.raises(MissingWeightsError, match=WEIGHTS[name].filename):
                next(iter(metric.networks(CFG).values()))(weights_dir=tmp_path)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
        models, missing = load_deep_models(CFG.sifid_layers, weights_dir=tmp_path)
        out = evaluate_samples(*_images(2), models=models)
        for key in metric.keys(CFG):
            assert key not in models and out[key] is None and out["unavailable"][key] == "no model given"
            assert WEIGHTS[metric.weights[0]].filename in missing[key] and str(tmp_path) in missing[key]

    def test_is_in_the_docs_table(self, metric):
        row = next(line for line in metrics_table().splitlines() if line.startswith(f"| {metric.title} |"))
        assert all(f"`{k}`" in row for k in metric.all_keys())
        assert metrics_table() in DOCS.read_text()


def test_every_weights_file_is_used_by_a_metric():
    used = {name for m in metrics() for name in m.weights}
    assert used == set(WEIGHTS)


def test_keys_follow_the_settings_and_the_ranks():
    """(The exact column order is pinned in tests/benchmark/test_places.py.)"""
    both = EvaluateConfig(sifid_layers=("pool1", "pool2"))
    keys = metric_keys(both)
    assert keys[:2] == ["sifid_pool1", "sifid_pool2"] and metric_keys(CFG).count("sifid_pool2") == 0
    assert keys == [k for m in sorted(metrics(), key=lambda m: m.rank) for k in m.keys(both)]
    assert (
        weight_free_keys()
        == tuple(metric_keys(both, deep=False))
        == tuple(k for k in keys if "sifid" not in k and "lpips" not in k)
    )


def test_a_key_without_its_network_is_unavailable_and_the_others_computed():
    torch.manual_seed(0)
    sifid = METRICS.get("sifid")
    cfg = EvaluateConfig(sifid_layers=("pool1", "pool2"))
    nets = {"sifid_pool1": sifid.networks(cfg)["sifid_pool1"](random_init=True)}
    values, unavailable, used = run_metrics(*_images(2), cfg, nets)
    assert math.isfinite(values["sifid_pool1"]) and used == nets
    assert values["sifid_pool2"] is None and unavailable["sifid_pool2"] == "no model given"
    assert values["lpips_diversity"] is None and unavailable["lpips_diversity"] == "no model given"
