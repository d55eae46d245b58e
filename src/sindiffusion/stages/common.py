"""What every stage shares: resolving paths, writing JSON atomically, opening its MLflow run."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Collection, Iterator

import torch

from ..artifacts import check_out_dir
from ..config import STAGE_SECTIONS, Params
from ..model_uri import ModelSource, resolve_model_uri
from ..paths import ImagePaths
from ..runtime import device_name
from ..tracking import Tracker, git_commit, stage_run


def image_paths(params: Params, image: str) -> ImagePaths:
    return ImagePaths(image=image, results=Path(params.section("data").results_dir))


def model_io(
    params: Params,
    paths: ImagePaths,
    checkpoint: str | Path | None,
    out_dir: str | Path | None,
    default_out: Path,
    force: bool,
    model_uri: str | None = None,
) -> tuple[ModelSource, Path, bool]:
    """``(model, output folder, force)`` of a stage that reads a trained model: the image's
    checkpoint and ``default_out`` unless given. The default folder is the project's own (always
    replaceable); a user's ``out_dir`` is checked now (:func:`check_out_dir`), before any work,
    then the model is found (:func:`model_source`)."""
    out = Path(out_dir) if out_dir else default_out
    force = force or out_dir is None
    check_out_dir(out, force)
    return model_source(params, checkpoint or (None if model_uri else paths.checkpoint), model_uri), out, force


def model_source(
    params: Params, checkpoint: str | Path | None, model_uri: str | None, kinds: Collection[str] | None = None
) -> ModelSource:
    """The model a command reads: the file ``checkpoint``, or the checkpoint of the MLflow model
    ``model_uri`` (downloaded from ``tracking.tracking_uri``'s store; a URI that does not resolve
    to a sindiffusion model of one of ``kinds`` is a :class:`~sindiffusion.model_uri.ModelUriError`,
    exit 2). Both given: a ValueError (exit 2)."""
    if checkpoint and model_uri:
        raise ValueError(f"--checkpoint {checkpoint} and --model-uri {model_uri}: give one of them, not both")
    if model_uri:
        return resolve_model_uri(model_uri, params.section("tracking").tracking_uri, kinds)
    if not checkpoint:
        raise ValueError("no model given: --checkpoint FILE or --model-uri URI")
    return ModelSource(Path(checkpoint))


@contextlib.contextmanager
def tracked(
    stage: str,
    image: str,
    params: Params,
    device: torch.device | None,
    local_note: str,
    extra_params: dict[str, Any] | None = None,
) -> Iterator[Tracker]:
    """Open the stage's nested MLflow run and log the stage's params.yaml sections (flattened),
    the git commit and the device."""
    tracking = params.section("tracking")
    with stage_run(
        stage,
        image,
        enabled=tracking.enabled,
        experiment=tracking.experiment,
        uri=tracking.tracking_uri,
        local_note=local_note,
        system_metrics=tracking.system_metrics_on(),
    ) as tracker:
        logged: dict[str, Any] = {name: params.section_dict(name) for name in STAGE_SECTIONS.get(stage, ())}
        logged["git_commit"] = git_commit()
        logged["image"] = image
        if device is not None:
            logged["device"] = device_name(device)
        logged.update(extra_params or {})
        tracker.log_params(logged)
        yield tracker


def as_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)
