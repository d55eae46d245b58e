"""Contract tests run for every registered weight-free metric (a new metric module is checked here automatically)."""

from __future__ import annotations

import math

import pytest
import torch

from sindiffusion.config import EvaluateConfig
from sindiffusion.evaluation import evaluate_samples
from sindiffusion.evaluation.registry import METRICS, MetricUnavailable


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 24, 32, generator=g), torch.rand(n, 3, 24, 32, generator=g)


@pytest.fixture(params=METRICS.names())
def metric(request):
    return request.param, METRICS.get(request.param)


class TestMetricContract:
    def test_returns_finite_numbers_named_after_it(self, metric):
        name, fn = metric
        values = fn(*_images(3), EvaluateConfig())
        assert values and all(isinstance(v, float) and math.isfinite(v) for v in values.values())
        assert any(k.startswith(name.split("_")[0]) for k in values)

    def test_is_deterministic_and_depends_on_the_samples(self, metric):
        _, fn = metric
        real, fakes = _images(3)
        assert fn(real, fakes, EvaluateConfig()) == fn(real, fakes, EvaluateConfig())
        assert fn(real, fakes, EvaluateConfig()) != fn(real, fakes.flip(-1) * 0.5, EvaluateConfig())

    def test_one_sample_is_a_value_or_a_reason(self, metric):
        _, fn = metric
        try:
            values = fn(*_images(1), EvaluateConfig())
        except MetricUnavailable as err:
            assert str(err)
        else:
            assert all(math.isfinite(v) for v in values.values())

    def test_evaluate_samples_reports_it(self, metric):
        name, fn = metric
        keys = set(fn(*_images(3), EvaluateConfig()))
        assert keys <= set(evaluate_samples(*_images(3), deep=False))
        one = evaluate_samples(*_images(1), deep=False)
        assert keys <= set(one) or (one[name] is None and one["unavailable"][name])


def test_the_registry_holds_the_weight_free_metrics():
    assert {"pixel_diversity", "copy_score", "patch_swd"} <= set(METRICS.names())
