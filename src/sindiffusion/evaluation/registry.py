"""The metric registry: one :class:`Metric` per module of :mod:`.weight_free` and :mod:`.pretrained`.

A metric receives the training image ``real`` ``[1, 3, H, W]`` and the samples ``fakes``
``[N, 3, h, w]`` (float in [0, 1]) and the ``evaluate`` section
(:class:`~sindiffusion.config.EvaluateConfig`) and returns ``{metric key: value}``; it raises
:class:`MetricUnavailable` with the reason when it cannot be computed (e.g. a diversity of one
sample). A metric that needs pretrained networks declares the checkpoints (names in
:data:`~.weights.WEIGHTS`) and builds one network per key; it is skipped with ``deep=False`` and
reported unavailable, with the reason, when its network is missing.

Everything that lists metrics asks this registry: :func:`~.metrics.evaluate_samples` and
:func:`~.metrics.load_deep_models`, the ``evaluate`` stage's printout, the benchmark's columns,
``sindiffusion weights status`` (which metric uses which file) and the docs table
(:func:`metrics_table`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import EvaluateConfig
from ..registry import Registry, import_submodules


def _load() -> None:
    import_submodules("sindiffusion.evaluation.pretrained")
    import_submodules("sindiffusion.evaluation.weight_free")


#: Metric name -> metric (an instance of a :class:`Metric` subclass), one module each.
METRICS: Registry["Metric"] = Registry("metric", load=_load)

#: Builds a metric's network: ``build(weights_dir=..., device=..., random_init=...)``; raises
#: :class:`~.weights.MissingWeightsError` when its checkpoint is absent (and ``random_init`` is False).
NetworkBuilder = Callable[..., nn.Module]


class MetricUnavailable(Exception):
    """The metric cannot be computed for these inputs; the message says why (it is reported, the value is null)."""


class Metric(ABC):
    """One metric; subclasses are registered with :func:`register`."""

    name: ClassVar[str]
    title: ClassVar[str]
    """Human name, e.g. ``"SIFID"`` (``weights status`` and error messages say what uses a checkpoint)."""
    help: ClassVar[str]
    """One line for the docs table: what it measures and which way is better."""
    rank: ClassVar[int]
    """Position in the benchmark's columns and in printouts (lower first)."""
    weights: ClassVar[tuple[str, ...]] = ()
    """Pretrained checkpoints it needs (names in :data:`~.weights.WEIGHTS`); empty = weight-free."""
    min_samples: ClassVar[int] = 1
    """Fewer samples -> unavailable ("needs at least N samples")."""
    notes: ClassVar[dict[str, str]] = {}
    """Extra ``key: text`` entries of the metrics JSON that document how it is computed."""

    def keys(self, cfg: EvaluateConfig) -> tuple[str, ...]:
        """The keys it reports under these settings (default: its name)."""
        return (self.name,)

    def all_keys(self) -> tuple[str, ...]:
        """Every key it can report, whatever the settings (for the docs table)."""
        return self.keys(EvaluateConfig())

    def networks(self, cfg: EvaluateConfig) -> dict[str, NetworkBuilder]:
        """Key -> builder of the network that computes it (metrics with :attr:`weights` only)."""
        return {}

    @abstractmethod
    def compute(
        self, real: torch.Tensor, fakes: torch.Tensor, cfg: EvaluateConfig, nets: Mapping[str, nn.Module]
    ) -> dict[str, float]:
        """``{key: value}``. ``nets``: the networks of the keys to compute (only those keys are computed)."""


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: add one instance of ``cls`` to :data:`METRICS` under ``cls.name``."""
    METRICS.register(cls.name)(cls())
    return cls


def metrics(*, deep: bool = True) -> list[Metric]:
    """The registered metrics in :attr:`Metric.rank` order; ``deep=False``: the weight-free ones only."""
    chosen = [m for _, m in METRICS.items() if deep or not m.weights]
    return sorted(chosen, key=lambda m: m.rank)


def metric_keys(cfg: EvaluateConfig, *, deep: bool = True) -> list[str]:
    """Every key the metrics report under ``cfg``, in column order (e.g. ``sifid_pool1, ..., pixel_diversity``)."""
    return [key for m in metrics(deep=deep) for key in m.keys(cfg)]


def weight_free_keys() -> tuple[str, ...]:
    """Keys of the metrics that need no pretrained network (reported on every machine)."""
    return tuple(metric_keys(EvaluateConfig(), deep=False))


def run_metrics(
    real: torch.Tensor,
    fakes: torch.Tensor,
    cfg: EvaluateConfig,
    nets: Mapping[str, nn.Module] | None = None,
    *,
    deep: bool = True,
) -> tuple[dict[str, Any], dict[str, str], dict[str, nn.Module]]:
    """Every registered metric -> ``(values, unavailable: key -> reason, networks used: key -> network)``.

    A key whose metric needs a network that ``nets`` lacks is None with the reason
    ``"no model given"``; a metric that raises :class:`MetricUnavailable` (or has too few samples)
    is None under each of its keys with the reason.
    """
    nets = nets or {}
    values: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    used: dict[str, nn.Module] = {}
    for metric in metrics(deep=deep):
        keys = metric.keys(cfg)
        given = {k: nets[k] for k in keys if k in nets} if metric.weights else {}
        todo = [k for k in keys if not metric.weights or k in given]
        for k in keys:
            if k not in todo:
                values[k], unavailable[k] = None, "no model given"
        if not todo:
            continue
        try:
            if fakes.shape[0] < metric.min_samples:
                raise MetricUnavailable(f"needs at least {metric.min_samples} samples")
            values.update(metric.compute(real, fakes, cfg, given))
            used.update(given)
        except MetricUnavailable as err:
            for k in todo:
                values[k], unavailable[k] = None, str(err)
    return values, unavailable, used


def metrics_table() -> str:
    """The markdown table of docs/benchmark.md (a test keeps the docs equal to it)."""
    lines = ["| metric | keys | needs | what |", "| --- | --- | --- | --- |"]
    for m in metrics():
        keys = ", ".join(f"`{k}`" for k in m.all_keys())
        needs = ", ".join(f"`{w}` weights" for w in m.weights) or "nothing"
        if m.min_samples > 1:
            needs += f"; {m.min_samples}+ samples"
        lines.append(f"| {m.title} | {keys} | {needs} | {m.help} |")
    return "\n".join(lines)
