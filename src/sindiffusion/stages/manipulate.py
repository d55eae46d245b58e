"""``sindiffusion manipulate``: every edit that params.yaml lists for an image, plus the one-off commands.

Outputs (all written into a temporary folder that is swapped in only when every edit succeeded,
so an error leaves the previous outputs untouched and nothing half-written)::

    results/<image>/manipulate/manipulate.json          summary of every edit (DVC metrics)
    results/<image>/manipulate/<edit>/result.png        the (first) result
    results/<image>/manipulate/<edit>/samples/...       all samples + grid.png when num > 1
    results/<image>/manipulate/<edit>/input.png, reference.png, mask.png   the inputs as used
    results/<image>/manipulate/<edit>/edit.json         options, input files + sha256, metrics

Every input is checked before the first sample is drawn (:func:`prepare_edit`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from ..applications.config import (
    EditSpec,
    ManipulateError,
    parse_edit,
    validate_all_edits,
)
from ..applications.manipulate import (
    PreparedEdit,
    check_checkpoint_image,
    log_edit,
    prepare_edit,
    run_edit,
    warn,
    write_edit,
)
from ..artifacts import check_out_dir, sha256_file, write_json, writing_dir
from ..config import Params
from ..data.io import image_to_tensor, load_image
from ..generate import ModelBundle, load_bundle
from ..progress import make_progress
from ..runtime import describe, resolve_device
from .common import image_paths, model_io, model_source, tracked


def _training_image(bundle: ModelBundle, candidates: list[Path]) -> tuple[torch.Tensor | None, Path | None]:
    """The processed training image whose sha256 the checkpoint records (first candidate that matches)."""

    sha = str(bundle.checkpoint["image"].get("sha256", ""))
    recorded = bundle.checkpoint["image"].get("path")
    for path in [*candidates, *([Path(recorded)] if recorded else [])]:
        if path.is_file() and (not sha or sha256_file(path) == sha):
            return image_to_tensor(load_image(path))[None], path
    return None, None


def _progress_bar(preps: list[PreparedEdit], bundle: ModelBundle, enabled: bool) -> Any:
    total = 0
    for p in preps:
        n_batches = -(-p.settings.num // p.settings.batch_size)
        total += n_batches * len(p.sampler.visited(p.t_start))
    return make_progress("manipulate", total, enabled, unit="step")


def _load(ckpt_path: Path, device: torch.device, use_ema: bool, precision: str) -> ModelBundle:
    print(f"manipulate: {describe(precision, device)}", file=sys.stderr, flush=True)
    return load_bundle(ckpt_path, device, use_ema=use_ema, precision=precision)


def _run_all(
    preps: list[PreparedEdit],
    bundle: ModelBundle,
    out: Path,
    tracker: Any,
    progress: bool,
    summary: dict[str, Any],
    single: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Sample every prepared edit, write into a temp folder next to ``out`` and swap it in."""
    results = []
    with writing_dir(out, force) as tmp:
        bar = _progress_bar(preps, bundle, progress)
        entries = []
        for prep in preps:
            bar.set_postfix_str(prep.spec.name)
            result = run_edit(prep, bundle, progress=lambda i, n: bar.update(1))
            folder = tmp if single else tmp / prep.spec.name
            meta = write_edit(
                folder,
                prep,
                result,
                {"checkpoint": summary["checkpoint"], "checkpoint_step": summary["checkpoint_step"]},
            )
            entries.append(
                {
                    "name": prep.spec.name,
                    "kind": prep.spec.kind,
                    "folder": "." if single else prep.spec.name,
                    "size": meta["size"],
                    "metrics": meta["metrics"],
                }
            )
            results.append((prep, result))
        bar.close()
        summary["edits"] = entries
        write_json(tmp / ("manipulate.json"), summary)
    for prep, result in results:
        log_edit(tracker, prep, result)
    tracker.log_artifact(out)
    return summary


def run(
    params: Params,
    image: str,
    checkpoint: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
    model_uri: str | None = None,
) -> dict:
    """Run every edit listed for ``image`` in ``params.yaml: manipulate.edits``, with the model
    ``checkpoint`` (default: the image's) or the MLflow model ``model_uri``.

    Raises :class:`ManipulateError` (a ``ValueError``) before writing anything when an edit, an
    input file or the checkpoint does not fit (a checkpoint of another image included), and
    :class:`~sindiffusion.outdir.OutputDirError` for a user's ``out_dir`` it must not replace
    (unless ``force``).
    """
    cfg = params.section("manipulate")
    specs = validate_all_edits(cfg, params.path).get(image, [])
    paths = image_paths(params, image)
    source, out, force = model_io(params, paths, checkpoint, out_dir, paths.manipulate, force, model_uri)
    ckpt_path = source.path
    summary: dict[str, Any] = {"image": image, "checkpoint": source.label, "checkpoint_step": None, "edits": []}
    if not specs:
        print(f"{image}: no edits listed in {params.path}: manipulate.edits.{image}; writing an empty summary")
        with writing_dir(out, force) as tmp:
            write_json(tmp / "manipulate.json", summary)
        summary["out"] = str(out)
        return summary
    device = resolve_device(cfg.device)
    bundle = _load(ckpt_path, device, cfg.use_ema, cfg.precision)
    check_checkpoint_image(bundle.checkpoint, source.label, image, paths.processed, strict=True)
    train_image, train_path = _training_image(bundle, [paths.processed])
    clip_cache: dict = {}
    preps = [prepare_edit(spec, cfg, bundle, train_image, train_path or paths.processed, clip_cache) for spec in specs]
    summary["checkpoint_step"] = int(bundle.checkpoint["step"])
    note = f"The results are still written to {out}."
    with tracked("manipulate", image, params, device, note, {"checkpoint": source.label}) as tracker:
        _run_all(preps, bundle, out, tracker, progress, summary, force=force)
    summary["out"] = str(out)
    return summary


def run_single(
    params: Params,
    kind: str,
    options: dict[str, Any],
    checkpoint: str | Path | None,
    out_dir: str | Path,
    image: str | None = None,
    progress: bool = True,
    force: bool = False,
    model_uri: str | None = None,
) -> dict:
    """One edit from command-line flags (``sindiffusion outpaint ...``); same checks and outputs as :func:`run`.
    The model: ``checkpoint``, the MLflow model ``model_uri``, or (neither) ``image``'s checkpoint.

    ``options`` are the edit's keys (``None`` values are dropped); errors name the ``--flag``.
    With ``image`` the checkpoint must be that image's (name always; a different sha256 of
    ``results/<image>/preprocess/image.png`` only warns).
    """
    cfg = params.section("manipulate")
    raw = {k: v for k, v in options.items() if v is not None}
    raw.setdefault("name", kind)
    spec: EditSpec = parse_edit(raw, "--", kind)
    if checkpoint is None and model_uri is None:
        if image is None:
            raise ManipulateError(
                "--checkpoint: required (or --model-uri, or --image to use results/IMAGE/train/model.pt)"
            )
        checkpoint = image_paths(params, image).checkpoint
    out = check_out_dir(out_dir, force)
    source = model_source(params, checkpoint, model_uri)
    ckpt_path = source.path
    device = resolve_device(cfg.device)
    bundle = _load(ckpt_path, device, cfg.use_ema, cfg.precision)
    candidates: list[Path] = []
    if image is not None:
        processed = image_paths(params, image).processed
        for w in check_checkpoint_image(bundle.checkpoint, source.label, image, processed, strict=False):
            warn(w)
        candidates.append(processed)
    train_image, train_path = _training_image(bundle, candidates)
    prep = prepare_edit(spec, cfg, bundle, train_image, train_path, {})
    name = image or bundle.image_name
    summary: dict[str, Any] = {
        "image": name,
        "checkpoint": source.label,
        "checkpoint_step": int(bundle.checkpoint["step"]),
        "edits": [],
    }
    note = f"The result is still written to {out}."
    with tracked(
        "manipulate",
        name,
        params,
        device,
        note,
        {"checkpoint": source.label, "command": kind, "edit": spec.to_dict()},
    ) as tracker:
        _run_all([prep], bundle, out, tracker, progress, summary, single=True, force=force)
    return summary
