"""What every stage shares: resolving paths, writing JSON atomically, opening its MLflow run."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import platform
from pathlib import Path
from typing import Any, Iterator

import torch

from ..config import STAGE_SECTIONS, Params
from ..data.io import atomic_write
from ..paths import ImagePaths
from ..tracking import Tracker, git_commit, stage_run


def image_paths(params: Params, image: str) -> ImagePaths:
    return ImagePaths(image=image, results=Path(params.section("data").results_dir))


def write_json(path: str | Path, data: Any) -> Path:
    """Atomic, pretty JSON; NaN/inf become null (DVC and browsers reject them)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    text = json.dumps(clean(data), indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}"


@contextlib.contextmanager
def tracked(stage: str, image: str, params: Params, device: torch.device | None, local_note: str,
            extra_params: dict[str, Any] | None = None) -> Iterator[Tracker]:
    """Open the stage's nested MLflow run and log the stage's params.yaml sections (flattened),
    the git commit and the device."""
    tracking = params.section("tracking")
    with stage_run(stage, image, enabled=tracking.enabled, experiment=tracking.experiment,
                   uri=tracking.tracking_uri, local_note=local_note) as tracker:
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
