"""The metric registry: ``name -> fn(real, fakes, cfg)``, one module per metric in :mod:`.weight_free`.

A metric function receives the training image ``real`` ``[1, 3, H, W]`` and the samples ``fakes``
``[N, 3, h, w]`` (float in [0, 1]) and the ``evaluate`` section (:class:`~sindiffusion.config.EvaluateConfig`)
and returns ``{metric key: value}``; it raises :class:`MetricUnavailable` with the reason when it
cannot be computed (e.g. a diversity of one sample). :func:`~.metrics.evaluate_samples` runs every
registered metric; the deep metrics (SIFID, LPIPS), which need pretrained networks, are run there.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..config import EvaluateConfig
from ..registry import Registry, import_submodules

MetricFn = Callable[[torch.Tensor, torch.Tensor, EvaluateConfig], dict[str, Any]]

#: Weight-free metrics, registered by the modules of :mod:`sindiffusion.evaluation.weight_free`.
METRICS: Registry[MetricFn] = Registry("metric", load=lambda: import_submodules("sindiffusion.evaluation.weight_free"))


class MetricUnavailable(Exception):
    """The metric cannot be computed for these inputs; the message says why (it is reported, the value is null)."""


def run_metrics(real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """Every registered metric -> ``(values, unavailable: name -> reason)``."""
    values: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for name, fn in METRICS.items():
        try:
            values.update(fn(real, fakes, cfg))
        except MetricUnavailable as err:
            values[name] = None
            unavailable[name] = str(err)
    return values, unavailable
