"""Every artifact path of the pipeline, spelled in one place.

The Snakefile imports this module, ``dvc.yaml`` spells the same templates (a test keeps the two
in step), and every stage of the command line derives its inputs and outputs from here::

    results/<image>/preprocess/image.png     processed training image
    results/<image>/preprocess/image.json    sizes + receptive field
    results/<image>/train/model.pt           final checkpoint (self-describing)
    results/<image>/train/resume/latest.pt   periodic checkpoint used to resume (not a declared output)
    results/<image>/train/snapshots/         min_XX.pt: EMA checkpoints at train.snapshot_minutes (optional)
    results/<image>/train/loss.csv           step,loss,it_per_s (DVC plot)
    results/<image>/train/loss.png           the loss curve as a picture (Snakemake report, DVC image plot)
    results/<image>/train/metrics.json       final training metrics (DVC metrics)
    results/<image>/samples/                 sample_000.png ... + grid.png + samples.json
    results/<image>/evaluate/metrics.json    evaluation metrics (DVC metrics)
    results/<image>/manipulate/              one folder per edit in params.yaml's manipulate section
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")

#: Templates with ``{results}`` and ``{image}``; used verbatim by the workflow and dvc.yaml.
TEMPLATES: dict[str, str] = {
    "processed": "{results}/{image}/preprocess/image.png",
    "processed_meta": "{results}/{image}/preprocess/image.json",
    "checkpoint": "{results}/{image}/train/model.pt",
    "resume": "{results}/{image}/train/resume/latest.pt",
    "snapshots": "{results}/{image}/train/snapshots",
    "loss": "{results}/{image}/train/loss.csv",
    "loss_plot": "{results}/{image}/train/loss.png",
    "train_metrics": "{results}/{image}/train/metrics.json",
    "samples": "{results}/{image}/samples",
    "grid": "{results}/{image}/samples/grid.png",
    "samples_meta": "{results}/{image}/samples/samples.json",
    "eval_dir": "{results}/{image}/evaluate",
    "eval_metrics": "{results}/{image}/evaluate/metrics.json",
    "manipulate": "{results}/{image}/manipulate",
    "manipulate_meta": "{results}/{image}/manipulate/manipulate.json",
}


#: What an image name may contain (it becomes a folder name under results/): no path separators.
IMAGE_NAME_PATTERN = r"[A-Za-z0-9._-]+"


class ImageNameError(ValueError):
    """An image name that is not a plain folder name; the message names it and says what is allowed."""


def check_image_name(name: str, where: str = "--image") -> str:
    """Return ``name`` if it is a plain name (letters, digits, ``.``, ``_``, ``-``; not ``.``/``..``).

    The one check of image names: every command (through :class:`ImagePaths`) and the Snakefile
    use it, so no name can write outside ``results/<image>/``. ``where`` (a flag, a params key, a
    file) prefixes the error message.
    """
    if not isinstance(name, str) or not re.fullmatch(IMAGE_NAME_PATTERN, name) or name in (".", ".."):
        message = (
            f"image name {name!r} is not allowed: use letters, digits, '.', '_' and '-' only "
            "(no path separators, not empty, not '.' or '..')"
        )
        raise ImageNameError(f"{where}: {message}" if where else message)
    return name


class _Artifact:
    """A typed attribute of :class:`ImagePaths`: the :data:`TEMPLATES` entry of the attribute's name."""

    def __set_name__(self, owner: type, name: str) -> None:
        if name not in TEMPLATES:
            raise AttributeError(f"ImagePaths.{name}: no such template in TEMPLATES")
        self.key = name

    def __get__(self, obj: "ImagePaths | None", owner: type) -> Path:
        if obj is None:
            raise AttributeError(self.key)
        return Path(TEMPLATES[self.key].format(results=obj.results, image=obj.image))


@dataclass(frozen=True)
class ImagePaths:
    """Artifact paths of one training image (the name is checked by :func:`check_image_name`)."""

    image: str
    results: Path = Path("results")

    processed = _Artifact()
    processed_meta = _Artifact()
    checkpoint = _Artifact()
    resume = _Artifact()
    snapshots = _Artifact()
    loss = _Artifact()
    loss_plot = _Artifact()
    train_metrics = _Artifact()
    samples = _Artifact()
    grid = _Artifact()
    samples_meta = _Artifact()
    eval_dir = _Artifact()
    eval_metrics = _Artifact()
    manipulate = _Artifact()
    manipulate_meta = _Artifact()

    def __post_init__(self) -> None:
        check_image_name(self.image)


def snapshot_name(minutes: float) -> str:
    """``min_05.pt`` for whole minutes, ``min_0.5.pt`` otherwise (sorts by name for marks < 100)."""
    return f"min_{int(minutes):02d}.pt" if float(minutes).is_integer() else f"min_{minutes:g}.pt"


def find_source_image(images_dir: str | Path, name: str) -> Path:
    """The raw image ``<images_dir>/<name>.<ext>``; raises FileNotFoundError listing what exists."""
    images_dir = Path(images_dir)
    matches = (
        sorted(p for p in images_dir.iterdir() if p.is_file() and p.stem == name and p.suffix.lower() in IMAGE_SUFFIXES)
        if images_dir.is_dir()
        else []
    )
    if not matches:
        have = ", ".join(list_images(images_dir)) or "none"
        raise FileNotFoundError(f"{images_dir}/{name}.*: no such image (images available: {have})")
    if len(matches) > 1:
        raise FileNotFoundError(f"{images_dir}/{name}.*: ambiguous, several files match: {[str(m) for m in matches]}")
    return matches[0]


def list_images(images_dir: str | Path) -> list[str]:
    """Names (file stems) of the image files directly in ``images_dir``, sorted."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        return []
    return sorted(p.stem for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
