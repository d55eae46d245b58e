"""One arm on one image: preprocess -> train -> sample -> evaluate, timed and resumable.

Files, beside the image's normal artifacts (``<out>/<arm>/<image>/...``)::

    benchmark/timing.json   wall seconds of each finished stage (+ the arm's settings fingerprint)
    benchmark/row.json      the image's result row, written last (its presence = image done)

A killed benchmark resumes where it stopped: an image whose ``row.json`` exists is not run
again, and inside an image a stage recorded in ``timing.json`` (whose output exists) is skipped,
so its time is not lost from the totals nor counted twice. Training itself resumes from its
periodic checkpoint (the train stage's own logic), so a kill mid-training costs at most
``train.save_every`` steps.

An arm whose model settings equal an earlier arm's (``train_source``) does not train: it adopts
that arm's processed image and trained files by hard link (:func:`adopt_training`) and its
``train_s`` (so ``first_sample_s`` stays what a user of this arm waits); the row says
``train_from``.

Timing columns (seconds of wall time on this machine, whatever else ran beside it):

* ``train_s``: the whole ``train`` stage (model build, steps, checkpoint writes; for a
  training-free model the index build);
* ``per_sample_s``: the sampling loop's time divided by the number of samples (batched);
* ``first_sample_s``: preprocess + train + the sample stage's start-up (loading the
  checkpoint, writing files) + one ``per_sample_s``: what a user waits for one sample.

Brightness check (``bright_*``): per sample, |mean luma (BT.601) - the training image's| on
a 0-1 scale; ``bright_max_dev`` is the largest over the samples, ``bright_over`` how many are
off by more than :data:`BRIGHTNESS_TOLERANCE`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from ..artifacts import atomic_link, write_json
from ..config import Params
from ..paths import ImagePaths
from ..stages import evaluate, preprocess, sample, train
from ..stages.common import image_paths
from ..stages.evaluate import load_unit, sample_files
from .arms import same_source

BRIGHTNESS_TOLERANCE = 0.1
#: BT.601 luma weights (R, G, B)
LUMA = (0.299, 0.587, 0.114)
STAGES = ("preprocess", "train", "sample")
#: what a trained image consists of (ImagePaths attributes), adopted by an arm that shares the training;
#: the checkpoint comes last: its presence is what marks the train stage done
TRAINED_FILES = ("processed", "processed_meta", "loss", "train_metrics", "checkpoint")


def row_path(paths: ImagePaths) -> Path:
    return paths.results / paths.image / "benchmark" / "row.json"


def timing_path(paths: ImagePaths) -> Path:
    return paths.results / paths.image / "benchmark" / "timing.json"


def luma_means(images: torch.Tensor) -> torch.Tensor:
    """``[N,3,H,W]`` in [0,1] -> ``[N]`` mean BT.601 luma of each image."""
    w = torch.tensor(LUMA, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * w).sum(1).mean(dim=(1, 2))


def brightness_stats(real: torch.Tensor, fakes: torch.Tensor, tolerance: float = BRIGHTNESS_TOLERANCE) -> dict:
    """``real`` ``[1,3,H,W]``, ``fakes`` ``[N,3,H',W']`` in [0,1] (any sizes): how far each sample's
    mean brightness is from the training image's."""
    dev = (luma_means(fakes) - luma_means(real)[0]).abs()
    return {
        "bright_max_dev": float(dev.max()),
        "bright_over": int((dev > tolerance).sum()),
        "bright_mean_dev": float(dev.mean()),
    }


def load_samples(samples_dir: Path) -> torch.Tensor:
    """The ``sample_*.png`` files of a samples folder -> ``[N,3,H,W]`` in [0,1]."""

    return torch.cat([load_unit(f) for f in sample_files(samples_dir)])


def _stage_done(stage: str, paths: ImagePaths) -> bool:
    out = {"preprocess": paths.processed, "train": paths.checkpoint, "sample": paths.samples_meta}[stage]
    return out.is_file()


def adopt_training(source: ImagePaths, paths: ImagePaths) -> None:
    """Give ``paths`` the processed image and trained files of ``source`` (same model settings).

    The checkpoint is linked last, so a kill in between leaves the train stage "not done".
    """
    if source.snapshots.is_dir():
        for f in sorted(source.snapshots.glob("*.pt")):
            atomic_link(f, paths.snapshots / f.name)
    for name in TRAINED_FILES:
        src = getattr(source, name)
        if src.is_file():
            atomic_link(src, getattr(paths, name))


def _earlier_segments(train_metrics: Any) -> float:
    """Seconds of training done before a resume (a preempted, then resumed training): the train
    stage's ``train_seconds_total`` minus this call's ``train_seconds``; 0 for a fresh one."""
    if not isinstance(train_metrics, Mapping) or not train_metrics.get("resumed_from_step"):
        return 0.0
    return max(0.0, float(train_metrics["train_seconds_total"]) - float(train_metrics["train_seconds"]))


def run_image(
    params: Params,
    arm: str,
    image: str,
    fingerprint: str,
    source_sha256: str,
    *,
    also_accept: Collection[str] = (),
    train_source: tuple[str, ImagePaths] | None = None,
    weights_dir: str | Path | None,
    models: Mapping[str, torch.nn.Module] | None,
    unavailable: Mapping[str, str] | None,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Run (or finish) ``arm`` on ``image`` and return its row (also written to ``row.json``).

    ``train_source``: ``(arm, paths)`` of an earlier arm with the same model settings whose
    training of ``image`` is finished; its model is adopted instead of training again.
    ``also_accept``: older spellings of ``fingerprint`` (the same settings) whose stage timings count.
    ``source_sha256``: the digest of the image's file (:func:`~.arms.source_digests`): stages an
    earlier run finished from another file of the same name are done again.
    """

    paths = image_paths(params, image)
    tpath = timing_path(paths)
    timing: dict[str, Any] = json.loads(tpath.read_text()) if tpath.is_file() else {}
    if timing.get("fingerprint") not in (fingerprint, *also_accept) or not same_source(
        timing.get("source_sha256"), source_sha256
    ):
        timing = {}
    timing["fingerprint"], timing["source_sha256"] = fingerprint, source_sha256
    if train_source is not None and not _stage_done("train", paths):
        source_arm, source = train_source
        source_timing = json.loads(timing_path(source).read_text())
        adopt_training(source, paths)
        for key in ("preprocess_s", "train_s"):
            timing[key] = source_timing[key]
        timing["train_from"] = source_arm
        write_json(tpath, timing)
        log(f"{arm}/{image}: same model settings as arm {source_arm!r}: its training adopted, not repeated")
    runners: dict[str, Callable[[], Any]] = {
        "preprocess": lambda: preprocess.run(params, image),
        "train": lambda: train.run(params, image, progress=progress),
        "sample": lambda: sample.run(params, image, progress=progress),
    }
    for stage in STAGES:
        if f"{stage}_s" in timing and _stage_done(stage, paths):
            log(f"{arm}/{image}: {stage} done before ({timing[f'{stage}_s']:.1f} s), skipped")
            continue
        t0 = time.perf_counter()
        result = runners[stage]()
        timing[f"{stage}_s"] = time.perf_counter() - t0
        if stage == "train":
            timing["train_s"] += _earlier_segments(result)
        write_json(tpath, timing)
    metrics = evaluate.run(
        params, image, weights_dir=weights_dir, models=models, unavailable=unavailable, verbose=False
    )
    meta = json.loads(paths.samples_meta.read_text())
    n = len(meta["files"])
    per_sample = float(meta["sample_seconds"]) / n
    startup = max(0.0, timing["sample_s"] - float(meta["sample_seconds"]))
    real = load_unit(paths.processed)
    row = {
        "kind": "image",
        "method": arm,
        "image": image,
        "source": str(paths.samples),
        **metrics,
        **brightness_stats(real, load_samples(paths.samples)),
        "n_samples": n,
        "train_s": timing["train_s"],
        "per_sample_s": per_sample,
        "first_sample_s": timing["preprocess_s"] + timing["train_s"] + startup + per_sample,
        "fingerprint": fingerprint,
        "source_sha256": source_sha256,
        **({"train_from": timing["train_from"]} if "train_from" in timing else {}),
    }
    write_json(row_path(paths), row)
    return row
