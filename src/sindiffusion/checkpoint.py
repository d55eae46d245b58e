"""Self-describing checkpoints.

A checkpoint is a plain dict of tensors and primitives (loadable with
``torch.load(weights_only=True)``)::

    format          "sindiffusion-checkpoint"
    version         1
    step            int, optimisation steps done
    config          {"model": ..., "diffusion": ..., "train": ...} as trained; ``model.kind`` names the
                    model kind (absent = ``unet``: every checkpoint written before kinds existed)
    image           {"name", "sha256", "size": [H, W], "path"}: the training image
    model, ema      state dicts (raw and EMA weights; a training-free ``patch`` model stores its
                    training image ``image: [1, 3, H, W]`` in [-1, 1] in both, sharing storage)
    optimizer       AdamW state dict
    rng             {"torch": ByteTensor, "train_generator": ByteTensor, "cuda": [ByteTensor] }

Writes are atomic (temp file in the same folder + ``os.replace``).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from .artifacts import atomic_write, sha256_file
from .diffusion.gaussian import GaussianDiffusion
from .models.kinds import kind_of_checkpoint

FORMAT = "sindiffusion-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """An unreadable or incompatible checkpoint; the message names the file."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (without ``format``/``version``; they are added) atomically."""
    payload = {"format": FORMAT, "version": VERSION, **state}

    def write(tmp: Path) -> None:
        # through a Python file: a full disk is then OSError(ENOSPC) (named by atomic_write), where
        # torch's own writer reports only "[enforce fail at inline_container.cc] unexpected pos"
        with open(tmp, "wb") as f:
            torch.save(payload, f)

    return atomic_write(path, write)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint with ``weights_only=True`` (no arbitrary code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt zip, truncated file, pickle refused ...
        if isinstance(err, pickle.UnpicklingError) and "weights only load failed" in str(err).lower():
            # weights_only refused it: say what, and never repeat torch's advice to lift the refusal
            reason = _refusal_reason(err)
            if reason.startswith("Unsupported operand"):  # bytes that are no pickle at all (a text file)
                raise CheckpointError(f"{path}: not a readable checkpoint (UnpicklingError: {reason})") from err
            raise CheckpointError(
                f"{path}: refused: it holds pickled objects other than tensors and plain values "
                f"({reason}); only checkpoints written by sindiffusion are loaded"
            ) from err
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a sindiffusion checkpoint (missing format={FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')} is not supported (expected {VERSION})")
    for key in ("step", "config", "image", "model", "ema"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    _check_contents(ckpt, path)
    return ckpt


def _refusal_reason(err: Exception) -> str:
    """The part of torch's weights-only refusal that says what was found (``Unsupported global:
    GLOBAL builtins.print``), without its advice to load with ``weights_only=False``."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    reason = text.split(marker, 1)[1].strip().split("\n", 1)[0] if marker in text else ""
    reason = reason.split(". Please", 1)[0].rstrip(".")  # drop torch's how-to-allow-it advice
    return reason if reason and "weights_only" not in reason else "an object torch refuses to load safely"


def _check_contents(ckpt: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose config is malformed or whose weights are not finite (a diverged
    training, a corrupt copy): it would draw black images with exit 0. Names the file and entry."""
    step, config = ckpt["step"], ckpt["config"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: 'step' must be an integer >= 0, got {step!r}")
    if not isinstance(config, dict) or not isinstance(config.get("diffusion"), dict):
        raise CheckpointError(f"{path}: 'config' must be a mapping with a 'diffusion' mapping, got {config!r:.80}")
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{path}: 'config.model' must be a mapping, got {config.get('model')!r:.80}")
    if not isinstance(ckpt["image"], dict):
        raise CheckpointError(f"{path}: 'image' must be a mapping (name, sha256, size), got {ckpt['image']!r:.80}")
    timesteps = config["diffusion"].get("timesteps")
    if not isinstance(timesteps, int) or isinstance(timesteps, bool) or timesteps < 1:
        raise CheckpointError(f"{path}: 'config.diffusion.timesteps' must be an integer >= 1, got {timesteps!r}")
    diffusion_from_checkpoint(ckpt, path)  # cheap: a schedule it cannot build is refused now
    for entry in ("model", "ema"):
        weights = ckpt[entry]
        if not isinstance(weights, dict) or not weights:
            raise CheckpointError(f"{path}: {entry!r} must be a non-empty mapping of weights")
        for name, tensor in weights.items():
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"{path}: {entry}.{name} is {type(tensor).__name__}, not a tensor")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(
                    f"{path}: {entry}.{name} holds NaN or infinite weights (a diverged or corrupt training); "
                    "retrain, or use an earlier checkpoint"
                )


def check_checkpoint_image(
    checkpoint: dict[str, Any], ckpt_path: str | Path, image: str, processed: Path | None, strict: bool = True
) -> list[str]:
    """Check that a checkpoint was trained on ``image`` (its recorded ``image.name`` and ``image.sha256``).

    A different name is always an error. A different sha256 of the processed image (when the file
    exists) is an error with ``strict``, else a returned warning.
    """
    info = checkpoint.get("image") or {}
    name, sha = str(info.get("name", "?")), str(info.get("sha256", ""))
    if name != image:
        raise CheckpointError(
            f"{ckpt_path}: this checkpoint was trained on image {name!r} (sha256 {sha[:12]}...), not {image!r}; "
            f"use the checkpoint of {image!r} (results/{image}/train/model.pt)"
        )
    warnings: list[str] = []
    if processed is not None and processed.is_file() and sha:
        actual = sha256_file(processed)
        if actual != sha:
            msg = (
                f"{ckpt_path}: trained on a different version of {processed} (sha256 {sha[:12]}... in the "
                f"checkpoint, {actual[:12]}... on disk); re-run `sindiffusion train --image {image}`"
            )
            if strict:
                raise CheckpointError(msg)
            warnings.append(msg)
    return warnings


#: What rebuilding a model or schedule from a malformed config or mismatched weights raises.
BUILD_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError)


def describe_error(err: BaseException) -> str:
    """``err`` on one line (torch's load_state_dict spreads it over several), shortened."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (KeyError, TypeError, AttributeError, IndexError)):
        text = f"{type(err).__name__}: {text}"
    return text if len(text) <= 300 else text[:297] + "..."


def model_from_checkpoint(
    ckpt: dict[str, Any], use_ema: bool = True, path: str | Path | None = None
) -> torch.nn.Module:
    """Rebuild the model described by the checkpoint (any registered kind) and load its (EMA) weights.
    A config and weights that do not make a model raise :class:`CheckpointError` naming ``path``."""
    where = path or "checkpoint"
    entry = "ema" if use_ema else "model"
    try:
        kind = kind_of_checkpoint(ckpt)
    except BUILD_ERRORS as err:
        raise CheckpointError(f"{where}: {describe_error(err)}") from err
    diffusion = diffusion_from_checkpoint(ckpt, path)
    try:
        return kind.from_checkpoint(ckpt, ckpt[entry], diffusion).eval()
    except BUILD_ERRORS as err:
        raise CheckpointError(
            f"{where}: its config.model and {entry!r} weights do not make a {kind.name} model ({describe_error(err)}); "
            "the file is damaged or was edited: retrain, or use another checkpoint"
        ) from err


def diffusion_from_checkpoint(ckpt: dict[str, Any], path: str | Path | None = None) -> GaussianDiffusion:
    """The noise schedule of the checkpoint; one its config.diffusion cannot build raises
    :class:`CheckpointError` naming ``path``."""
    d = ckpt["config"]["diffusion"]
    try:
        # checkpoints written before v-prediction existed predict eps
        return GaussianDiffusion.from_config(
            d["schedule"],
            d["timesteps"],
            d["beta_start"],
            d["beta_end"],
            d["variance"],
            d.get("parameterization", "eps"),
        )
    except BUILD_ERRORS as err:
        raise CheckpointError(
            f"{path or 'checkpoint'}: its config.diffusion does not describe a noise schedule ({describe_error(err)})"
        ) from err
