"""Evaluation of single-image generative models (docs/benchmark.md, "Metrics").

All images are float RGB tensors in [0,1], ``[N,3,H,W]`` (or ``[3,H,W]`` for
one image).

* The metric registry (:mod:`.registry`): one module per metric in
  :mod:`.pretrained` (need pretrained torchvision weights, never downloaded
  implicitly; see :mod:`.weights`: SIFID, LPIPS diversity) and
  :mod:`.weight_free` (pixel diversity, copy/memorisation score, multi-scale
  patch sliced Wasserstein distance; :mod:`.structure`: sharpness, stretch and
  coverage).
* :func:`evaluate_samples` computes them all, marks missing deep metrics
  unavailable, and guards against numbers from random backbones;
  :func:`write_metrics_json` writes a reportable dict atomically.

Example::

    from sindiffusion.evaluation import evaluate_samples, write_metrics_json
    metrics = evaluate_samples(real, samples, sifid_layers=("pool1", "pool2"))
    write_metrics_json("metrics/places50_1.json", metrics)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# Lazy attributes (PEP 562): the metrics pull in torchvision/scipy/lpips, which importers that only
# need one light helper must not pay for.
_LAZY: dict[str, str] = {
    "BadWeightsError": "weights",
    "DEFAULT_COPY_THRESHOLD": "patches",
    "DEFAULT_COVERAGE_THRESHOLD": "structure",
    "InceptionFeatures": "sifid",
    "LPIPSAlex": "diversity",
    "MissingWeightsError": "weights",
    "RANDOM_FLAG": "metrics",
    "RANDOM_SUFFIX": "metrics",
    "RandomWeightsError": "metrics",
    "SIFID_LAYERS": "sifid",
    "WEIGHTS": "weights",
    "WeightSpec": "weights",
    "assert_reportable": "metrics",
    "copy_score": "patches",
    "coverage": "structure",
    "default_weights_dir": "weights",
    "evaluate_samples": "metrics",
    "extract_patches": "patches",
    "fetch_weights": "weights",
    "find_weights": "weights",
    "frechet_distance": "sifid",
    "gaussian_stats": "sifid",
    "load_deep_models": "metrics",
    "lpips_diversity": "diversity",
    "nearest_patch_distances": "patches",
    "pairwise_lpips": "diversity",
    "patch_swd": "patches",
    "pixel_diversity": "patches",
    "resize_to": "_images",
    "sharpness": "structure",
    "sifid": "sifid",
    "sifid_metric_name": "sifid",
    "sifid_per_image": "sifid",
    "stretch": "structure",
    "to_gray": "patches",
    "verify_weights": "weights",
    "weights_path": "weights",
    "weights_status": "weights",
    "write_metrics_json": "metrics",
}

__all__ = [
    "BadWeightsError",
    "DEFAULT_COPY_THRESHOLD",
    "DEFAULT_COVERAGE_THRESHOLD",
    "InceptionFeatures",
    "LPIPSAlex",
    "MissingWeightsError",
    "RANDOM_FLAG",
    "RANDOM_SUFFIX",
    "RandomWeightsError",
    "SIFID_LAYERS",
    "WEIGHTS",
    "WeightSpec",
    "assert_reportable",
    "copy_score",
    "coverage",
    "default_weights_dir",
    "evaluate_samples",
    "extract_patches",
    "fetch_weights",
    "find_weights",
    "frechet_distance",
    "gaussian_stats",
    "load_deep_models",
    "lpips_diversity",
    "nearest_patch_distances",
    "pairwise_lpips",
    "patch_swd",
    "pixel_diversity",
    "resize_to",
    "sharpness",
    "sifid",
    "sifid_metric_name",
    "sifid_per_image",
    "stretch",
    "to_gray",
    "verify_weights",
    "weights_path",
    "weights_status",
    "write_metrics_json",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _LazyPackage(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # The import system binds each submodule as an attribute of this package. `sifid` names
        # both a submodule and a function: keep the function, as `from .sifid import sifid` would.
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _LazyPackage
