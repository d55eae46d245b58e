"""``sindiffusion seam-jump``: how visible the ``tile`` start's seams are in finished samples.

Why
---
The ``tile`` start (:mod:`sindiffusion.applications.tiled_layout`) lays the image out side by
side (wider canvases) or rolled (the training size with ``init: tile``); where the image's right
edge meets its left there is a seam for the denoiser to redraw. Patch SWD, sharpness and coverage
barely move when a seam stays visible (a column of vine, a ridge cut by a vertical step), and a
seam-detecting metric that does not know where the seams are picks the image's own upright edges
(trunks, masts) instead. The sample stage records each sample's seams in ``samples.json``
(``seams``: per sample, the first column right of each cut), so the jump across exactly those
columns can be measured.

What
----
For each sample: its luma (Rec. 601, [0, 1]) blurred by a Gaussian of ``blur`` px (the finish's
grain should not count), the mean over rows of ``|column j - column j-1|`` for every ``j``, and
at each seam that mean divided by its mean over all columns. 1 = the seam is as visible as an
average column of the sample; a straight cut between unrelated edges scores well above 1 (the
UNet's rolled start on Places50 10 and 12 at 128 px: about 1.5-1.8). Folders whose samples have
no seams (another start, a crop) are skipped.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..artifacts import atomic_write
from ..data.io import open_image

COLUMNS = ("folder", "samples", "seams", "jump_mean", "jump_max")


def column_jumps(luma: np.ndarray, blur: float = 1.0) -> np.ndarray:
    """``luma [H, W]`` in [0, 1] -> ``[W - 1]``: entry ``j - 1`` is the mean over rows of
    ``|column j - column j-1|`` after a Gaussian blur of ``blur`` px (0 = none)."""
    if luma.ndim != 2 or luma.shape[1] < 2:
        raise ValueError(f"luma must be [H, W] with W >= 2, got shape {luma.shape}")
    smooth = ndimage.gaussian_filter(luma.astype(np.float64), blur) if blur > 0 else luma.astype(np.float64)
    return np.abs(np.diff(smooth, axis=1)).mean(axis=0)


def seam_jumps(luma: np.ndarray, seams: list[int], blur: float = 1.0) -> list[float]:
    """The jump across each seam column ``j`` of ``luma [H, W]`` (:func:`column_jumps` at ``j - 1``)
    over the mean jump across all columns: 1 = as visible as an average column."""
    jumps = column_jumps(luma, blur)
    mean = float(jumps.mean())
    bad = [j for j in seams if not 1 <= j < luma.shape[1]]
    if bad:
        raise ValueError(f"seam columns {bad} lie outside 1..{luma.shape[1] - 1}")
    return [float(jumps[j - 1]) / mean if mean > 0 else 1.0 for j in seams]


def score_folder(folder: str | Path, blur: float = 1.0) -> dict[str, Any] | None:
    """Score a samples folder (``samples.json`` and its PNGs): ``{"folder", "samples", "seams",
    "jump_mean", "jump_max"}``, or None when its samples record no seams."""
    folder = Path(folder)
    meta_path = folder / "samples.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{meta_path}: cannot read the samples' record ({err})") from err
    seams = meta.get("seams")
    if not seams or not any(seams):
        return None
    files = meta.get("files", [])
    if len(files) != len(seams):
        raise ValueError(f"{meta_path}: {len(files)} files but seams for {len(seams)} samples")
    values: list[float] = []
    for name, cols in zip(files, seams):
        luma = np.asarray(open_image(folder / name).convert("L"), dtype=np.float64) / 255.0
        values += seam_jumps(luma, list(cols), blur)
    return {
        "folder": str(folder),
        "samples": len(files),
        "seams": len(values),
        "jump_mean": float(np.mean(values)),
        "jump_max": float(np.max(values)),
    }


def score_tree(roots: list[str | Path], blur: float = 1.0) -> list[dict[str, Any]]:
    """:func:`score_folder` of every folder under ``roots`` holding a ``samples.json`` (a benchmark's
    ``--out``, a ``results/`` tree or one samples folder), in path order; folders without seams left out."""
    rows = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise ValueError(f"{root}: no such folder")
        found = sorted(root.rglob("samples.json")) if root.is_dir() else []
        if not found:
            raise ValueError(f"{root}: no samples.json in it (a samples folder, or a folder above some)")
        rows += [r for r in (score_folder(p.parent, blur) for p in found) if r is not None]
    return rows


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """The rows of :func:`score_tree` as a CSV file (:data:`COLUMNS`), written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()))
