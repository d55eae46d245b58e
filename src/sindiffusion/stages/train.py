"""``sindiffusion train``: fit the model to the processed image (resumable), or, for a training-free
model kind, build it from the image and store it in the same checkpoint format."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..artifacts import atomic_write, remove_stale_temps, sha256_file, write_json
from ..checkpoint import (
    BUILD_ERRORS,
    CheckpointError,
    check_checkpoint_image,
    describe_error,
    load_checkpoint,
    save_checkpoint,
)
from ..config import Params
from ..data.io import image_to_tensor, load_image
from ..diffusion.gaussian import GaussianDiffusion
from ..locks import exclusive
from ..logged_model import sampling_of
from ..models.kinds import ModelKind, get_kind
from ..paths import ImagePaths, snapshot_name
from ..runtime import Preempted, resolve_device
from ..tracking import switched_off
from ..training.loss_plot import plot_loss
from ..training.trainer import Trainer
from .common import image_paths, tracked

LOSS_COLUMNS = ["step", "loss", "it_per_s"]
#: The lock file in the train folder held while a training writes there.
LOCK_NAME = ".train.lock"


def _read_loss_rows(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= upto]


def _write_loss_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOSS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()))


def _history(rows: list[dict]) -> list[dict[str, str]]:
    """loss.csv's rows as strings (as read back from the CSV), kept in the resume checkpoint."""
    return [{k: str(v) for k, v in row.items()} for row in rows]


def run(params: Params, image: str, progress: bool = True) -> dict:
    """Train (or resume) the model for ``image``; writes model.pt, loss.csv and metrics.json.

    The resume checkpoint carries the loss history, so ``loss.csv`` is complete after a resume
    even when a workflow manager deleted it with the failed job's outputs. On SIGTERM/SIGUSR1/
    SIGINT the resume checkpoint is written at the current step and
    :class:`~sindiffusion.runtime.Preempted` is raised (the MLflow run ends KILLED).

    One training per results folder at a time: a second one of the same image is refused
    (:class:`~sindiffusion.locks.LockedError`, exit 2) while the first holds ``train/.train.lock``;
    the lock of a killed training is free again (:mod:`sindiffusion.locks`).
    """
    paths = image_paths(params, image)
    refusal = (
        f"another `sindiffusion train --image {image}` is writing into this folder; wait for it to end or "
        "stop it: two at once would overwrite each other's checkpoints and loss.csv"
    )
    with exclusive(paths.checkpoint.parent / LOCK_NAME, refusal):
        return _train(params, image, progress)


def _train(params: Params, image: str, progress: bool) -> dict:
    """:func:`run` while the folder's lock is held."""
    sections = params.stage("train")
    model_cfg, diffusion_cfg, train_cfg = sections["model"], sections["diffusion"], sections["train"]
    kind = get_kind(model_cfg.kind)
    paths = image_paths(params, image)
    img = load_image(paths.processed)
    x = image_to_tensor(img)
    m = kind.geometry(model_cfg).size_multiple
    if x.shape[1] % m or x.shape[2] % m:
        raise ValueError(
            f"{paths.processed}: size {tuple(x.shape[1:])} is not a multiple of {m}; "
            "run `sindiffusion preprocess` with the same model section"
        )
    info = {
        "name": image,
        "sha256": sha256_file(paths.processed),
        "size": list(x.shape[1:]),
        "path": str(paths.processed),
    }
    device = resolve_device(train_cfg.device)
    if not kind.trainable:
        return _build_training_free(params, image, kind, model_cfg, diffusion_cfg, x, info, device)
    trainer = Trainer(x, model_cfg, diffusion_cfg, train_cfg, info, device)
    print(f"train: {trainer.precision_note}; EMA decay {trainer.ema_decay:.6g}", file=sys.stderr, flush=True)

    for path in (paths.checkpoint, paths.resume, paths.loss, paths.loss_plot, paths.train_metrics):
        remove_stale_temps(path)  # left by a process killed while writing
    resumed_from = 0
    ckpt = None
    if paths.resume.is_file():
        try:
            ckpt = load_checkpoint(paths.resume)
        except CheckpointError as err:
            print(f"WARNING: ignoring unusable resume checkpoint: {err}", file=sys.stderr)
            ckpt = None
        if ckpt is not None:
            same_run = ckpt["image"].get("sha256") == info["sha256"] and _comparable(ckpt["config"]) == _comparable(
                trainer.config_dict()
            )
            if same_run and ckpt["step"] <= train_cfg.steps:
                try:
                    trainer.load_state_dict(ckpt)
                except BUILD_ERRORS as err:  # same config, yet weights or optimiser state of other shapes
                    raise CheckpointError(
                        f"{paths.resume}: its state does not fit the model of its own config ({describe_error(err)}); "
                        "the file is damaged: delete it to train from scratch"
                    ) from err
                resumed_from = trainer.step
                print(f"resuming from {paths.resume} at step {resumed_from}", file=sys.stderr)
            elif same_run:
                print(
                    f"WARNING: {paths.resume} is at step {ckpt['step']}, beyond train.steps={train_cfg.steps}; "
                    "starting from scratch",
                    file=sys.stderr,
                )
            else:
                print(
                    f"WARNING: {paths.resume} belongs to another run (different image or config); "
                    "starting from scratch",
                    file=sys.stderr,
                )
    if resumed_from == 0 and paths.snapshots.is_dir():
        shutil.rmtree(paths.snapshots)  # a fresh training: snapshots of an earlier run would be stale
    if resumed_from and "loss_history" in ckpt:
        rows = [row for row in ckpt["loss_history"] if int(row["step"]) <= resumed_from]
    else:  # a checkpoint written before the history was kept in it
        rows = _read_loss_rows(paths.loss, resumed_from)
    _write_loss_rows(paths.loss, rows)

    note = f"Training metrics are still written to {paths.loss} and {paths.train_metrics}." + _log_later(params, image)
    with tracked("train", image, params, device, note, {"resumed_from_step": resumed_from}) as tracker:
        # the runs table's Dataset column: what this model is trained on (shown while it trains)
        tracker.log_dataset(
            image, info["sha256"], paths.processed, {"height": info["size"][0], "width": info["size"][1]}
        )

        def on_log(step: int, loss: float, its: float) -> None:
            rows.append({"step": step, "loss": f"{loss:.6f}", "it_per_s": f"{its:.4f}"})
            _write_loss_rows(paths.loss, rows)
            tracker.log_metrics({"loss": loss, "it_per_s": its}, step=step)

        def on_save(t: Trainer) -> None:
            save_checkpoint(paths.resume, {**t.state_dict(), "loss_history": _history(rows)})

        def on_snapshot(t: Trainer, minutes: float) -> None:
            path = save_checkpoint(paths.snapshots / snapshot_name(minutes), t.snapshot_state(minutes))
            print(
                f"train: snapshot at {minutes:g} min (step {t.step}, {t.seconds:.1f} s) -> {path}",
                file=sys.stderr,
                flush=True,
            )

        try:
            summary = trainer.run(
                train_cfg.steps, on_log=on_log, on_save=on_save, progress=progress, on_snapshot=on_snapshot
            )
        except Preempted as stop:
            if stop.step is None:  # stopped outside the training loop: no resume state was written now
                raise
            stop.checkpoint = str(paths.resume)
            tracker.set_tags(
                {
                    "sindiffusion.stopped_at_step": stop.step,
                    "sindiffusion.resumable": "true",
                    "sindiffusion.resume_checkpoint": str(paths.resume),
                }
            )
            raise
        state = trainer.state_dict()
        save_checkpoint(paths.checkpoint, state)
        save_checkpoint(paths.resume, {**state, "loss_history": _history(rows)})
        final_loss = summary["final_loss"]
        if final_loss != final_loss and rows:  # resumed at the target step: no step ran, keep the last logged loss
            final_loss = float(rows[-1]["loss"])
        metrics = {
            "final_loss": final_loss,
            "steps": int(summary["steps"]),
            "it_per_s": summary["it_per_s"],
            "train_seconds": summary["seconds"],
            "resumed_from_step": resumed_from,
            "device": str(device),
            "precision": trainer.precision_note,
            "train_seconds_total": summary["train_seconds_total"],
            "stopped_by_time": bool(summary["stopped_by_time"]),
        }
        _record_model(tracker, params, paths, metrics)
    return metrics


def _build_training_free(
    params: Params,
    image: str,
    kind: ModelKind,
    model_cfg: Any,
    diffusion_cfg: Any,
    x: torch.Tensor,
    info: dict,
    device: torch.device,
) -> dict:
    """A model kind with nothing to optimise: build it (its patch index) once to validate and time it,
    then write the same outputs as training (checkpoint, empty loss curve, metrics)."""
    paths = image_paths(params, image)
    diffusion = GaussianDiffusion.from_config(
        diffusion_cfg.schedule,
        diffusion_cfg.timesteps,
        diffusion_cfg.beta_start,
        diffusion_cfg.beta_end,
        diffusion_cfg.variance,
        diffusion_cfg.parameterization,  # recorded in the checkpoint: the kind refuses one it cannot serve
    )
    image_t = x[None].contiguous()  # [1, 3, H, W] in [-1, 1]
    t0 = time.perf_counter()
    model = kind.build(model_cfg, diffusion, image_t).to(device)
    if hasattr(model, "build_index"):
        model.build_index()
    seconds = time.perf_counter() - t0
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {
        "step": 0,
        "config": {"model": kind.stored_config(model_cfg), "diffusion": dataclasses.asdict(diffusion_cfg), "train": {}},
        "image": info,
        "model": state,
        "ema": state,
    }
    note = f"The model is in {paths.checkpoint}." + _log_later(params, image)
    with tracked("train", image, params, device, note, {"model_kind": kind.name}) as tracker:
        tracker.log_dataset(
            image, info["sha256"], paths.processed, {"height": info["size"][0], "width": info["size"][1]}
        )
        save_checkpoint(paths.checkpoint, ckpt)
        _write_loss_rows(paths.loss, [])
        metrics = {
            "final_loss": None,
            "steps": 0,
            "it_per_s": None,
            "train_seconds": seconds,
            "index_seconds": seconds,
            "resumed_from_step": 0,
            "device": str(device),
            "model_kind": kind.name,
        }
        _record_model(tracker, params, paths, metrics)
    print(f"{kind.name} model: built from {paths.processed} in {seconds:.2f} s (nothing to train)", file=sys.stderr)
    return metrics


def _record_model(tracker: Any, params: Params, paths: ImagePaths, metrics: dict) -> None:
    """The train stage's last outputs, whatever the model kind: ``metrics.json`` and its numbers in
    MLflow, the checkpoint's path and SHA-256 as tags (the file itself with ``tracking.log_checkpoint``),
    the MLflow logged model of the checkpoint (``tracking.log_model``; its metrics are these),
    ``loss.csv`` (empty for a training-free kind) and its picture ``loss.png``."""
    plot_loss(_read_loss_rows(paths.loss, sys.maxsize), paths.loss_plot, f"{paths.image}: training loss")
    write_json(paths.train_metrics, metrics)
    tracker.set_tags({"checkpoint.path": str(paths.checkpoint), "checkpoint.sha256": sha256_file(paths.checkpoint)})
    tracking = params.section("tracking")
    if tracking.log_checkpoint:
        tracker.log_artifact(paths.checkpoint, "checkpoint")
    if tracking.log_model:
        _log_model(tracker, params, paths.image, paths.checkpoint)
    tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    tracker.log_artifact(paths.loss)


def _log_model(tracker: Any, params: Params, image: str, checkpoint: Path) -> None:
    """``checkpoint`` as the MLflow logged model ``image`` of this run (registered with
    ``tracking.register_as``); its default sampling settings are the params' ``sample`` section."""
    tracking = params.section("tracking")
    tracker.log_model(
        checkpoint,
        image,
        sampling_of(params.section_dict("sample")),
        register_as=tracking.registered_name(image),
        aliases=tracking.register_aliases,
    )


def _log_later(params: Params, image: str) -> str:
    """The local note's hint for a model that could not be logged (nothing is lost: the checkpoint is the model)."""
    if not params.section("tracking").log_model:
        return ""
    return f" Log the model to MLflow later: `sindiffusion log-model --image {image} --params {params.path}`."


def log_model(params: Params, image: str, checkpoint: str | Path | None = None) -> str:
    """``sindiffusion log-model``: log a checkpoint already written (default: the image's) as an
    MLflow logged model, as the train stage does (``tracking.register_as`` included), in a new run
    ``<image>/log-model`` with the training image as its dataset and ``metrics.json`` beside the
    checkpoint as its metrics. For a model that training could not log (server down). Returns the
    model URI; tracking off or failing is an error (nothing to log to)."""
    paths = image_paths(params, image)
    ckpt_path = Path(checkpoint) if checkpoint else paths.checkpoint
    ckpt = load_checkpoint(ckpt_path)
    check_checkpoint_image(ckpt, ckpt_path, image, None)
    tracking = params.section("tracking")
    if not tracking.enabled or switched_off():
        raise ValueError(
            f"{params.path}: tracking.enabled is false (or SINDIFFUSION_TRACKING is off): no MLflow to log the model to"
        )
    info = ckpt["image"]
    metrics_file = ckpt_path.parent / paths.train_metrics.name
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    note = f"Nothing was logged; the model is still {ckpt_path}."
    extra = {"checkpoint": str(ckpt_path), "checkpoint_step": int(ckpt["step"]), "config": ckpt["config"]}
    with tracked("log-model", image, params, None, note, extra) as tracker:
        size = [int(v) for v in info["size"]]
        tracker.log_dataset(image, str(info["sha256"]), info.get("path", ""), {"height": size[0], "width": size[1]})
        tracker.set_tags({"checkpoint.path": str(ckpt_path), "checkpoint.sha256": sha256_file(ckpt_path)})
        _log_model(tracker, params, image, ckpt_path)
        tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        uri = tracker.model_uri
    if not uri:
        raise RuntimeError(f"the model was not logged to MLflow (see the warning above); {ckpt_path} is unchanged")
    return uri


def _comparable(config: dict) -> dict:
    """Config keys that must match to resume: everything except the target step count and logging."""
    train = {
        k: v
        for k, v in config["train"].items()
        if k not in ("steps", "log_every", "save_every", "device", "max_minutes", "snapshot_minutes")
    }
    return {"model": config["model"], "diffusion": config["diffusion"], "train": train}
