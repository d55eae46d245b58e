"""Run one validated edit (:class:`~.config.EditSpec`) on a trained model: prepare, sample, write.

The ``manipulate`` stage (every edit in params.yaml) and the one-off commands (``sindiffusion
outpaint ...``) both go through the three steps here:

1. :func:`prepare_edit` reads and checks every input (files, sizes, masks, the low-pass factor,
   CLIP weights) *before* anything is sampled or written, and raises :class:`ManipulateError`
   naming the params key or command-line flag;
2. :func:`run_edit` builds the hooks of :mod:`sindiffusion.applications` and draws the samples
   through :func:`sindiffusion.generate.generate` (the one sampling loop);
3. :func:`write_edit` writes ``result.png`` (+ ``samples/`` when ``num > 1``), the inputs as
   used (``input.png``, ``reference.png``, ``mask.png``) and ``edit.json`` into a folder.

Working size: a reference image (painting, composite, edited image, inpainting input) is
resized to the training image's size when its aspect ratio is within 2 % of it, otherwise to
the same pixel area with its own aspect ratio (the model is fully convolutional; objects keep
the scale the model learned). ``height``/``width`` override this.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from ..artifacts import sha256_file, write_json
from ..checkpoint import check_checkpoint_image
from ..data.io import make_grid, save_image, tensor_to_image
from ..diffusion import build_sampler
from ..diffusion.x0 import x0_clip_of
from ..generate import ModelBundle, generate
from .base import (
    APPLICATIONS,
    EditContext,
    EditResult,
    PreparedEdit,
    Settings,
    working_size,
)
from .config import EditSpec, ManipulateConfig, ManipulateError

__all__ = [
    "EditResult",
    "PreparedEdit",
    "Settings",
    "check_checkpoint_image",
    "prepare_edit",
    "run_edit",
    "working_size",
    "write_edit",
]


# ---------------------------------------------------------------------------- inputs
def prepare_edit(
    spec: EditSpec,
    cfg: ManipulateConfig,
    bundle: ModelBundle,
    train_image: torch.Tensor | None,
    train_image_path: Path | None = None,
    clip_cache: dict[tuple[str, str], tuple] | None = None,
) -> PreparedEdit:
    """Read and check every input of ``spec`` (its application's :meth:`~.base.Application.prepare`);
    nothing is sampled or written.

    Args:
        train_image: the processed training image ``[1, 3, H, W]`` (default input of outpaint,
            inpaint, super-resolution and layout-preserving resize), or ``None`` if unavailable.

    Raises:
        ManipulateError: naming the key/flag: missing or unreadable files, mask size != image size,
            empty or all-ones masks, a factor N too large for the size, unavailable CLIP weights, ...
    """
    settings = Settings.resolve(spec, cfg)
    try:
        sampler = build_sampler(settings, bundle.diffusion)
    except ValueError as err:
        raise ManipulateError(f"{spec.where('steps')}: {err}") from err
    prep = PreparedEdit(spec=spec, settings=settings, sampler=sampler, size=bundle.train_size)
    ctx = EditContext(cfg, bundle, train_image, train_image_path, clip_cache if clip_cache is not None else {})
    APPLICATIONS.get(spec.kind)().prepare(prep, ctx)
    try:
        bundle.check_start(sampler, prep.t_start, "this edit")
    except ValueError as err:  # the start is the strength's (SDEdit) or, without one, the kind's (pure noise)
        key = "strength" if spec.get("strength") is not None else "kind"
        raise ManipulateError(f"{spec.where(key)}: {err}") from err
    return prep


# ---------------------------------------------------------------------------- sampling
def run_edit(prep: PreparedEdit, bundle: ModelBundle, progress: Callable[[int, int], None] | None = None) -> EditResult:
    """Sample ``prep.settings.num`` results with the edit's hooks (one sampling loop) and its metrics."""
    app = APPLICATIONS.get(prep.spec.kind)()
    s = prep.settings
    T = bundle.diffusion.num_timesteps
    samples, timings = generate(
        bundle,
        s.num,
        prep.size,
        prep.sampler,
        seed=s.seed,
        batch_size=s.batch_size,
        hooks_for=lambda start, end: app.hooks(prep, T),
        t_start=prep.t_start,
        clip_x0=x0_clip_of(s),
        progress=progress,
    )
    metrics, per_sample = app.metrics(prep, samples, bundle)
    metrics = {
        "sample_seconds": timings["sample_seconds"],
        "seconds_per_sample": timings["seconds_per_sample"],
        **metrics,
    }
    return EditResult(samples=samples, metrics=metrics, per_sample=per_sample)


# ---------------------------------------------------------------------------- outputs
def write_edit(folder: Path, prep: PreparedEdit, result: EditResult, extra: dict[str, Any] | None = None) -> dict:
    """Write one edit's outputs into ``folder`` (created; the caller swaps it in atomically).

    ``result.png`` (first sample), ``samples/sample_NNN.png`` + ``grid.png`` when ``num > 1``,
    ``input.png`` / ``reference.png`` / ``mask.png`` (white = generated or changed) as used, and
    ``edit.json``. Returns the metadata written to ``edit.json``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = ["result.png"]
    save_image(result.samples[0], folder / "result.png")
    if result.samples.shape[0] > 1:
        for i, x in enumerate(result.samples):
            save_image(x, folder / "samples" / f"sample_{i:03d}.png")
            files.append(f"samples/sample_{i:03d}.png")
        save_image(make_grid(result.samples), folder / "grid.png")
        files.append("grid.png")
    if prep.input is not None:
        save_image(prep.input[0], folder / "input.png")
        files.append("input.png")
    if prep.reference is not None and (
        prep.input is None or prep.reference.shape != prep.input.shape or not torch.equal(prep.reference, prep.input)
    ):
        save_image(prep.reference[0], folder / "reference.png")
        files.append("reference.png")
    if prep.mask is not None:
        save_image(prep.mask[0].expand(3, -1, -1) * 2 - 1, folder / "mask.png")
        files.append("mask.png")
    options = dict(prep.spec.options)
    meta = {
        "name": prep.spec.name,
        "kind": prep.spec.kind,
        "options": options,
        "settings": dataclasses.asdict(prep.settings),
        "size": list(prep.size),
        "factor": prep.factor,
        "t_start": prep.t_start,
        "inputs": {k: {"path": v, "sha256": sha256_file(v)} for k, v in prep.files.items()},
        "files": files,
        "metrics": result.metrics,
        "per_sample": result.per_sample,
        "notes": prep.notes,
    }
    if prep.clip is not None:
        meta["clip"] = {"model": prep.clip.model_name, "pretrained": prep.clip.pretrained}
    meta.update(extra or {})

    write_json(folder / "edit.json", meta)
    return meta


def log_edit(tracker: Any, prep: PreparedEdit, result: EditResult, prefix: str = "") -> None:
    """Log an edit's inputs, result images and metrics to an MLflow tracker (no-op tracker is fine)."""

    key = f"{prefix}{prep.spec.name}"
    tracker.log_metrics({f"{key}.{k}": v for k, v in result.metrics.items()})
    tracker.log_image(tensor_to_image(result.samples[0]), key=f"{key}/result")
    if result.samples.shape[0] > 1:
        tracker.log_image(tensor_to_image(make_grid(result.samples)), key=f"{key}/grid")
    if prep.input is not None:
        tracker.log_image(tensor_to_image(prep.input[0]), key=f"{key}/input")
    if prep.mask is not None:
        tracker.log_image(tensor_to_image(prep.mask[0].expand(3, -1, -1).cpu() * 2 - 1), key=f"{key}/mask")


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)
