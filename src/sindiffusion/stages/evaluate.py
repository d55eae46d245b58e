"""``sindiffusion evaluate``: score one image's samples (docs/benchmark.md, "Metrics") -> metrics JSON + MLflow.

Reads the processed training image (``paths.processed``) and the samples
(``paths.samples/sample_*.png``) and computes, with
:func:`sindiffusion.evaluation.evaluate_samples`:

every metric of the registry (:mod:`sindiffusion.evaluation.registry`, listed in
docs/benchmark.md):

* weight-free metrics, always (pixel diversity, copy score, patch SWD, ...);
* metrics that declare pretrained weights when those are on disk (and pass the SHA-256 check),
  e.g. ``sifid_<layer>`` and ``lpips_diversity``. Otherwise the metric is ``null`` and
  ``unavailable[<metric>]`` says which file is missing, its URL and where to put it.

The JSON (``paths.eval_metrics``) is written atomically by
:func:`~sindiffusion.evaluation.write_metrics_json`, which refuses any number from a random
backbone. Bad input (no processed image, no samples) raises before anything is written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..artifacts import sha256_file
from ..config import Params
from ..data.io import ImageError, image_to_tensor, load_image
from ..evaluation import evaluate_samples, load_deep_models, write_metrics_json
from ..evaluation.registry import metric_keys
from ..evaluation.registry import metrics as registered_metrics
from ..paths import ImagePaths
from ..runtime import resolve_device
from .common import image_paths, tracked


def load_unit(path: str | Path) -> torch.Tensor:
    """Image file -> ``[1,3,H,W]`` float32 in [0, 1]."""
    return ((image_to_tensor(load_image(path)) + 1.0) / 2.0).clamp(0, 1).unsqueeze(0)


def sample_files(samples_dir: str | Path) -> list[Path]:
    """``sample_*.png`` files of a samples folder, sorted (``grid.png`` is not a sample)."""
    return sorted(Path(samples_dir).glob("sample_*.png"))


def check_inputs(paths: ImagePaths, samples_dir: Path) -> list[Path]:
    """Raise a clear error (exit status 2 on the CLI) when the inputs are missing."""
    if not paths.processed.is_file():
        raise FileNotFoundError(
            f"{paths.processed}: processed training image not found; "
            f"run `sindiffusion preprocess --image {paths.image}` first"
        )
    files = sample_files(samples_dir)
    if not files:
        raise FileNotFoundError(
            f"{samples_dir}: no samples (sample_*.png) found; run `sindiffusion sample --image {paths.image}` first"
        )
    return files


def load_models(
    params: Params, weights_dir: str | Path | None = None, device: torch.device | None = None
) -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """Pretrained networks of the deep metrics (load once, reuse for many images)."""

    cfg = params.section("evaluate")
    if not cfg.deep:
        return {}, {}
    device = device or resolve_device(cfg.device)
    wdir = weights_dir if weights_dir is not None else cfg.weights_dir
    return load_deep_models(cfg.sifid_layers, weights_dir=wdir, device=device, verify=True)


def compute(
    params: Params,
    real: torch.Tensor,
    fakes: torch.Tensor | list[torch.Tensor],
    *,
    models: Mapping[str, torch.nn.Module] | None = None,
    unavailable: Mapping[str, str] | None = None,
    deep: bool | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Metrics of ``fakes`` against ``real`` with the ``evaluate`` section's settings.

    ``models``/``unavailable`` come from :func:`load_models`; ``deep=False`` skips the deep
    metrics (e.g. for one published baseline sample).
    """

    cfg = params.section("evaluate")
    deep = cfg.deep if deep is None else deep
    if deep and models is None:
        models, unavailable = load_models(params, device=device)
    metrics = evaluate_samples(
        real,
        fakes,
        sifid_layers=cfg.sifid_layers,
        deep=deep,
        device=device or "cpu",
        models=models if deep else None,
        copy_threshold=cfg.copy_threshold,
        copy_stride=cfg.copy_stride,
        patch_size=cfg.patch_size,
        swd_seed=cfg.swd_seed,
        coverage_threshold=cfg.coverage_threshold,
    )
    if deep:
        # evaluate_samples marks a metric whose model was not given "no model given": say why instead
        for key, reason in (unavailable or {}).items():
            if key in metrics["unavailable"]:
                metrics["unavailable"][key] = reason
    return metrics


def format_metrics(metrics: Mapping[str, Any], order: Sequence[str] = ()) -> list[str]:
    """One line per metric (``n/a`` for unavailable ones) followed by the reasons.

    ``order``: keys printed first, in this order (the registry's column order); others follow
    alphabetically.
    """
    keys = [k for k in order if k in metrics] + sorted(
        k
        for k, v in metrics.items()
        if k not in order
        and (v is None or isinstance(v, (int, float)))
        and not isinstance(v, bool)
        and k != "num_samples"
    )
    lines = [f"  {k:<16} {'n/a' if metrics[k] is None else format(metrics[k], '.4f')}" for k in keys]
    for key, reason in (metrics.get("unavailable") or {}).items():
        lines.append(f"  unavailable: {key}: {reason}")
    return lines


def check_metrics_out(path: Path) -> None:
    """``--out`` is a metrics JSON file: a folder, or an existing file that is not a metrics file
    this stage wrote (a JSON object with ``num_samples``), is a ValueError naming it (exit 2), so
    that a user's file is never overwritten."""
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; --out is the metrics JSON file to write (e.g. {path}/metrics.json)")
    if not path.exists():
        return
    try:
        written = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        written = None
    if not (isinstance(written, dict) and "num_samples" in written):
        raise ValueError(
            f"{path}: exists and is not a metrics file written by `sindiffusion evaluate`; refusing to "
            "overwrite it: choose another --out or remove the file"
        )


def _checkpoint_sha256(samples_dir: Path) -> str | None:
    """The sha256 of the checkpoint that drew the samples (``samples.json``), if recorded."""
    try:
        meta = json.loads((samples_dir / "samples.json").read_text())
    except (OSError, ValueError):
        return None
    sha = meta.get("checkpoint_sha256") if isinstance(meta, dict) else None
    return sha if isinstance(sha, str) and sha else None


def run(
    params: Params,
    image: str,
    *,
    weights_dir: str | Path | None = None,
    samples_dir: str | Path | None = None,
    out: str | Path | None = None,
    models: Mapping[str, torch.nn.Module] | None = None,
    unavailable: Mapping[str, str] | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Evaluate ``image``'s samples; writes ``paths.eval_metrics`` (or ``out``) and logs to MLflow.

    Args:
        weights_dir: overrides ``evaluate.weights_dir`` (default: the torch hub cache).
        samples_dir: overrides ``paths.samples``.
        out: overrides ``paths.eval_metrics``.
        models, unavailable: prebuilt networks from :func:`load_models` (the benchmark loads
            them once); by default they are loaded here.
        verbose: print the metrics and the reasons for unavailable ones.

    Returns:
        The metrics dict that was written.
    """

    cfg = params.section("evaluate")
    paths = image_paths(params, image)
    sdir = Path(samples_dir) if samples_dir else paths.samples
    out_path = Path(out) if out else paths.eval_metrics
    if out:  # the default path is the project's own file
        check_metrics_out(out_path)
    files = check_inputs(paths, sdir)
    real = load_unit(paths.processed)
    fakes = [load_unit(f) for f in files]
    sizes = {tuple(f.shape[-2:]) for f in fakes}
    if len(sizes) != 1:
        raise ImageError(f"{sdir}: samples have different sizes {sorted(sizes)}; evaluate one sampling run at a time")
    device = resolve_device(cfg.device)
    wdir = weights_dir if weights_dir is not None else cfg.weights_dir
    if models is None and cfg.deep:
        models, unavailable = load_models(params, wdir, device)
    note = f"The metrics are still written to {out_path}."
    extra = {
        "weights_dir": str(wdir) if wdir else "torch hub cache",
        "num_samples": len(files),
        "samples_dir": str(sdir),
    }
    with tracked("evaluate", image, params, device, note, extra) as tracker:
        model_sha = _checkpoint_sha256(sdir)
        if model_sha:  # the scores are those of the logged model that drew the samples
            tracker.link_model(model_sha, (image, sha256_file(paths.processed)))
        metrics = compute(params, real, torch.cat(fakes), models=models, unavailable=unavailable, device=device)
        metrics["image"] = image
        metrics["sample_size"] = list(fakes[0].shape[-2:])
        metrics["train_size"] = list(real.shape[-2:])
        if cfg.deep:
            metrics["weights"] = {k: str(getattr(m, "weights_file", None)) for k, m in (models or {}).items()}
        for metric in registered_metrics():
            metrics.update(metric.notes)
        write_metrics_json(out_path, metrics)
        tracker.log_metrics(
            {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        )
        tracker.set_tags({f"unavailable.{k}": v[:4000] for k, v in metrics["unavailable"].items()})
        tracker.log_artifact(out_path)
    if verbose:
        print(
            f"{image}: {len(files)} samples of {metrics['sample_size'][0]}x{metrics['sample_size'][1]} -> {out_path}",
            flush=True,
        )
        for line in format_metrics(metrics, metric_keys(cfg)):
            print(line, file=sys.stderr if line.lstrip().startswith("unavailable") else sys.stdout, flush=True)
    return metrics
