"""One call to evaluate samples of one training image, and a safe metrics writer.

:func:`evaluate_samples` runs every registered metric (:mod:`.registry`): the
weight-free ones always, the deep ones (which declare pretrained weights) only
when their weights are on disk. A deep metric whose weights are missing is
reported as ``None`` with the reason under ``"unavailable"``, never as 0 and
never from a random network::

    {"num_samples": 10, "pixel_diversity": 0.41, "copy_nn_dist": 0.04,
     "copy_fraction": 0.3, "patch_swd": 0.02,
     "sifid_pool1": None, "lpips_diversity": None,
     "unavailable": {"sifid_pool1": "missing weights 'inception_v3_google-...",
                     "lpips_diversity": "missing weights 'alexnet-owt-..."}}

Random-backbone guard: numbers from a randomly initialised backbone are
meaningless. They only appear when a caller passes
``allow_random_weights=True`` (tests), and then under keys suffixed
:data:`RANDOM_SUFFIX` and with ``metrics["random_weights"] = True``;
:func:`write_metrics_json` refuses such dicts.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..artifacts import atomic_write
from ..config import EvaluateConfig
from ._images import ImageBatch, as_image, as_same_size_batch
from .patches import DEFAULT_COPY_THRESHOLD
from .registry import metrics as registered_metrics
from .registry import run_metrics
from .structure import DEFAULT_COVERAGE_THRESHOLD
from .weights import MissingWeightsError, verify_weights

__all__ = [
    "RANDOM_FLAG",
    "RANDOM_SUFFIX",
    "RandomWeightsError",
    "assert_reportable",
    "evaluate_samples",
    "load_deep_models",
    "write_metrics_json",
]

log = logging.getLogger(__name__)

#: key suffix of a number computed with a random backbone (tests only)
RANDOM_SUFFIX = "_random_weights"
#: top-level flag set on any dict holding such a number
RANDOM_FLAG = "random_weights"


class RandomWeightsError(RuntimeError):
    """A metric computed with a random (not pretrained) backbone would be reported."""


def load_deep_models(
    sifid_layers: Sequence[str] = ("pool1",),
    *,
    weights_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    allow_random_weights: bool = False,
    verify: bool = False,
) -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """Build the networks of every registered metric that needs pretrained weights, keyed by metric key.

    Load once and pass as ``evaluate_samples(..., models=...)`` when
    evaluating many images.

    Returns:
        ``(models, unavailable)``: ``models`` maps e.g. ``"sifid_pool1"`` to an
        :class:`~.sifid.InceptionFeatures` and ``"lpips_diversity"`` to an
        :class:`~.diversity.LPIPSAlex`; ``unavailable`` maps the keys whose
        weights are missing to the :class:`MissingWeightsError` message.
        With ``allow_random_weights=True`` (tests only) a missing network is
        replaced by a random one (``is_random = True``) instead.
        With ``verify=True`` each checkpoint's SHA-256 is checked first
        (:func:`verify_weights`): a file that is not the published one makes
        its metrics unavailable (:class:`BadWeightsError`), so a randomly
        filled file with the right name cannot yield reported numbers.
    """
    cfg = EvaluateConfig(sifid_layers=tuple(sifid_layers))  # type: ignore[arg-type]
    models: dict[str, torch.nn.Module] = {}
    unavailable: dict[str, str] = {}
    for metric in registered_metrics():
        for key, build in metric.networks(cfg).items():
            try:
                if verify:
                    for name in metric.weights:
                        verify_weights(name, weights_dir)
                models[key] = build(weights_dir=weights_dir, device=device)
            except MissingWeightsError as err:
                if allow_random_weights:
                    log.warning("%s: %s; using a RANDOM backbone (allow_random_weights=True)", key, err)
                    models[key] = build(random_init=True, device=device)
                else:
                    log.warning("%s unavailable: %s", key, err)
                    unavailable[key] = str(err)
    return models, unavailable


def evaluate_samples(
    real: torch.Tensor,
    fakes: ImageBatch,
    *,
    sifid_layers: Sequence[str] = ("pool1",),
    weights_dir: str | Path | None = None,
    deep: bool = True,
    device: str | torch.device = "cpu",
    allow_random_weights: bool = False,
    models: Mapping[str, torch.nn.Module] | None = None,
    copy_threshold: float = DEFAULT_COPY_THRESHOLD,
    copy_stride: int = 4,
    patch_size: int = 7,
    swd_seed: int = 0,
    coverage_threshold: float = DEFAULT_COVERAGE_THRESHOLD,
) -> dict[str, Any]:
    """All registered metrics (:data:`~.registry.METRICS`) of N samples of one training image.

    Args:
        real: training image ``[3,H,W]`` or ``[1,3,H,W]``, float in [0,1].
        fakes: samples ``[N,3,h,w]`` (or a same-size sequence), float in
            [0,1], at the training image's scale.
        sifid_layers: SIFID layers, ``"pool1"`` and/or ``"pool2"``.
        weights_dir: where the pretrained checkpoints are (default: torch hub cache).
        deep: compute the metrics that need pretrained networks (when their weights exist).
        device: where the deep networks run.
        allow_random_weights: tests only: fall back to random backbones when
            weights are missing; their numbers go under ``<name>_random_weights``
            keys and the dict gets ``"random_weights": True``, which
            :func:`write_metrics_json` refuses.
        models: prebuilt networks from :func:`load_deep_models` (skips loading).
        copy_threshold, copy_stride, patch_size: see :func:`copy_score`.
        swd_seed: seed of :func:`patch_swd`'s projections.
        coverage_threshold: see :func:`~.structure.coverage`.

    Returns:
        A flat dict of floats (or None) plus ``"num_samples"`` and
        ``"unavailable"`` (metric key -> reason). Metrics needing two samples
        (pixel and LPIPS diversity) are None for N = 1.
    """
    real_b = as_image(real, "real")
    fakes_b = as_same_size_batch(fakes, "fakes")
    cfg = EvaluateConfig(
        sifid_layers=tuple(sifid_layers),  # type: ignore[arg-type]
        patch_size=patch_size,
        copy_stride=copy_stride,
        copy_threshold=copy_threshold,
        swd_seed=swd_seed,
        coverage_threshold=coverage_threshold,
    )
    missing: dict[str, str] = {}
    if deep and models is None:
        models, missing = load_deep_models(
            sifid_layers, weights_dir=weights_dir, device=device, allow_random_weights=allow_random_weights
        )
    values, unavailable, used = run_metrics(real_b, fakes_b, cfg, models, deep=deep)
    unavailable.update(missing)  # why a network is missing beats "no model given"
    out: dict[str, Any] = {"num_samples": fakes_b.shape[0], **values}

    # random-backbone guard
    random_keys = [k for k, m in used.items() if getattr(m, "is_random", True)]
    if random_keys:
        if not allow_random_weights:
            raise RandomWeightsError(f"random-backbone networks used for {random_keys} without allow_random_weights")
        for k in random_keys:
            out[k + RANDOM_SUFFIX] = out.pop(k)
        out[RANDOM_FLAG] = True
        log.warning("metrics %s come from RANDOM backbones: for tests only, not reportable", random_keys)
    out["unavailable"] = unavailable
    assert_reportable(out, used, allow_random_weights=allow_random_weights)
    return out


def _walk_keys(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            items.append((f"{prefix}{k}", v))
            items.extend(_walk_keys(v, f"{prefix}{k}."))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            items.extend(_walk_keys(v, f"{prefix}{i}."))
    return items


def assert_reportable(
    metrics: Mapping[str, Any],
    extractors: Mapping[str, Any] | None = None,
    *,
    allow_random_weights: bool = False,
) -> None:
    """Raise :class:`RandomWeightsError` unless ``metrics`` holds only pretrained-network numbers.

    Args:
        metrics: a metrics dict (nested dicts/lists are searched too).
        extractors: metric name -> network that computed it. A network whose
            ``is_random`` is True (or that has no ``is_random`` attribute) must
            not have produced a non-None value under its plain name.
        allow_random_weights: accept random-backbone numbers provided they are
            under ``*_random_weights`` keys AND the dict is flagged
            ``"random_weights": True`` (how :func:`evaluate_samples` marks them).

    A dict flagged ``"random_weights"`` or with any ``*_random_weights`` key
    is never reportable without ``allow_random_weights``.
    """
    keys = _walk_keys(metrics)
    flagged = any((k == RANDOM_FLAG or k.endswith("." + RANDOM_FLAG)) and bool(v) for k, v in keys)
    suffixed = [k for k, _ in keys if k.endswith(RANDOM_SUFFIX)]
    for name, net in (extractors or {}).items():
        if getattr(net, "is_random", True) and metrics.get(name) is not None:
            raise RandomWeightsError(f"metric {name!r} was computed with a random-backbone network")
    if not allow_random_weights and (flagged or suffixed):
        raise RandomWeightsError(
            f"metrics computed with random-backbone networks are not reportable: {sorted(suffixed) or RANDOM_FLAG}"
        )
    if allow_random_weights and suffixed and not flagged:
        raise RandomWeightsError(f"random-backbone metrics {suffixed} without the {RANDOM_FLAG!r} flag")


def write_metrics_json(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` as JSON, atomically (temporary file in the same folder + ``os.replace``).

    Refuses (:class:`RandomWeightsError`) any dict holding random-backbone
    numbers (flagged ``"random_weights"`` or with ``*_random_weights`` keys),
    and (``ValueError``) NaN/inf values, which are not valid JSON. Tensors and
    numpy scalars are converted to Python floats/ints. Returns the path.
    """
    assert_reportable(metrics)
    data = _to_jsonable(metrics)
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        obj = obj.item() if obj.numel() == 1 else obj.tolist()
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite metric value {obj!r}")
    return obj
