"""What every stage shares: resolving paths, writing JSON atomically, opening its MLflow run."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Iterator

import torch

from ..config import STAGE_SECTIONS, Params
from ..paths import ImagePaths
from ..runtime import device_name
from ..tracking import Tracker, git_commit, stage_run


def image_paths(params: Params, image: str) -> ImagePaths:
    return ImagePaths(image=image, results=Path(params.section("data").results_dir))


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
    ) as tracker:
        logged: dict[str, Any] = {name: params.section_dict(name) for name in STAGE_SECTIONS[stage]}
        logged["git_commit"] = git_commit()
        logged["image"] = image
        if device is not None:
            logged["device"] = device_name(device)
        logged.update(extra_params or {})
        tracker.log_params(logged)
        yield tracker


def as_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)
