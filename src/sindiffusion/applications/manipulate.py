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
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..checkpoint import sha256_file
from ..data.io import image_to_tensor, load_image, make_grid, save_image
from ..diffusion import Sampler, build_sampler
from ..diffusion.x0 import x0_clip_of
from ..generate import ModelBundle, generate
from .config import EditSpec, ManipulateConfig, ManipulateError
from .ilvr import ILVRHook, LowPass, sdedit_timestep
from .known_region import KnownRegionHook, load_mask, outpaint_canvas, outpaint_to_size, validate_mask
from .text import CLIPGuidanceHook, MissingCLIPWeightsError, check_clip_weights, clip_score, encode_text, load_clip

__all__ = ["EditResult", "PreparedEdit", "Settings", "check_checkpoint_image", "prepare_edit", "run_edit",
           "working_size", "write_edit"]

ILVR_KINDS = ("paint", "harmonize", "edit")
MASK_KINDS = ("inpaint", "harmonize", "edit")


@dataclass(frozen=True)
class Settings:
    """Sampling settings of one edit (the section's defaults, overridden by the edit's keys)."""

    sampler: str
    steps: int
    eta: float
    seed: int
    num: int
    batch_size: int
    clip_x0: bool | str
    clip_x0_percentile: float
    clip_x0_low_noise: float

    @classmethod
    def resolve(cls, spec: EditSpec, cfg: ManipulateConfig) -> "Settings":
        return cls(**{f.name: spec.get(f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cls)})


@dataclass
class ClipGuide:
    model: torch.nn.Module
    normalize: Any
    text_features: torch.Tensor
    model_name: str
    pretrained: str


@dataclass
class PreparedEdit:
    """Everything an edit needs, checked: tensors are ``[1, C, H, W]`` in [-1, 1] (masks {0, 1})."""

    spec: EditSpec
    settings: Settings
    sampler: Sampler
    """Built once from ``settings`` (its timesteps set)."""
    size: tuple[int, int]
    """Output ``(H, W)``."""
    input: torch.Tensor | None = None
    """The input as used: the image to extend/fill, the reference before resizing for SR, ..."""
    reference: torch.Tensor | None = None
    """At the output size: the known canvas (outpaint/inpaint) or the ILVR reference."""
    mask: torch.Tensor | None = None
    """At the output size, 1 = generated / allowed to change."""
    factor: int | None = None
    t_start: int | None = None
    clip: ClipGuide | None = None
    files: dict[str, str] = field(default_factory=dict)
    """Input files used: key -> path."""
    notes: list[str] = field(default_factory=list)


@dataclass
class EditResult:
    samples: torch.Tensor
    """``[num, 3, H, W]`` in [-1, 1], on the CPU."""
    metrics: dict[str, float]
    per_sample: dict[str, list[float]] = field(default_factory=dict)


# ---------------------------------------------------------------------------- inputs
def check_checkpoint_image(checkpoint: dict[str, Any], ckpt_path: str | Path, image: str,
                           processed: Path | None, strict: bool = True) -> list[str]:
    """Check that a checkpoint was trained on ``image`` (its recorded ``image.name`` and ``image.sha256``).

    A different name is always an error. A different sha256 of the processed image (when the file
    exists) is an error with ``strict``, else a returned warning.
    """
    info = checkpoint.get("image") or {}
    name, sha = str(info.get("name", "?")), str(info.get("sha256", ""))
    if name != image:
        raise ManipulateError(
            f"{ckpt_path}: this checkpoint was trained on image {name!r} (sha256 {sha[:12]}...), not {image!r}; "
            f"use the checkpoint of {image!r} (results/{image}/train/model.pt) or drop --image")
    warnings: list[str] = []
    if processed is not None and processed.is_file() and sha:
        actual = sha256_file(processed)
        if actual != sha:
            msg = (f"{ckpt_path}: trained on a different version of {processed} (sha256 {sha[:12]}... in the "
                   f"checkpoint, {actual[:12]}... on disk); re-run `sindiffusion train --image {image}`")
            if strict:
                raise ManipulateError(msg)
            warnings.append(msg)
    return warnings


def _file(spec: EditSpec, key: str) -> Path:
    path = Path(str(spec[key]))
    if not path.is_file():
        raise ManipulateError(f"{spec.where(key)}: {path}: file not found" + (
            " (paths are relative to the repository root)" if not path.is_absolute() else ""))
    return path


def _read_image(spec: EditSpec, key: str) -> tuple[Path, Any]:
    from ..data.io import ImageError

    path = _file(spec, key)
    try:
        return path, load_image(path)
    except ImageError as err:
        raise ManipulateError(f"{spec.where(key)}: {err}") from err


def _to_tensor(img: Any, size: tuple[int, int] | None = None) -> torch.Tensor:
    from PIL import Image

    if size is not None and (img.height, img.width) != tuple(size):
        img = img.resize((int(size[1]), int(size[0])), Image.LANCZOS)
    return image_to_tensor(img)[None]


def working_size(native: tuple[int, int], train: tuple[int, int], height: int | None = None,
                 width: int | None = None, tolerance: float = 0.02) -> tuple[int, int]:
    """Size at which a reference image of ``native = (h, w)`` is used (see the module docstring)."""
    h, w = native
    if height and width:
        return int(height), int(width)
    if height:
        return int(height), max(8, round(height * w / h))
    if width:
        return max(8, round(width * h / w)), int(width)
    th, tw = train
    if abs((w / h) / (tw / th) - 1.0) <= tolerance:
        return th, tw
    area = th * tw
    new_h = math.sqrt(area * h / w)
    return max(8, round(new_h)), max(8, round(new_h * w / h))


def _check_factor(spec: EditSpec, factor: int, size: tuple[int, int], key: str = "factor") -> None:
    try:
        LowPass(factor).check(*size)
    except ValueError as err:
        raise ManipulateError(f"{spec.where(key)}: {err}") from err


def _read_mask(spec: EditSpec, image_path: Path | None, native: tuple[int, int], like: torch.Tensor) -> tuple[Path, torch.Tensor]:
    """Mask file -> ``[1, 1, H, W]`` at ``like``'s size; its own size must equal the image's ``native``."""
    path = _file(spec, "mask")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mw, mh = im.size
    except (UnidentifiedImageError, OSError) as err:
        raise ManipulateError(f"{spec.where('mask')}: {path}: not an image file ({err})") from err
    if (mh, mw) != tuple(native):
        what = image_path if image_path is not None else "the training image"
        raise ManipulateError(
            f"{spec.where('mask')}: mask size {mh}x{mw} (HxW) does not match the image size {native[0]}x{native[1]} "
            f"of {what}; draw the mask on that image")
    invert = bool(spec.get("invert_mask", False))
    try:
        validate_mask(load_mask(path, invert=invert), torch.zeros(1, 1, mh, mw))
        mask = load_mask(path, size=tuple(like.shape[-2:]), invert=invert)
        mask = validate_mask(mask, like)
    except ValueError as err:
        raise ManipulateError(f"{spec.where('mask')}: {path}: {err}") from err
    return path, mask


def _t_start(spec: EditSpec, sampler: Sampler) -> int | None:
    strength = spec.get("strength")
    return None if strength is None else sdedit_timestep(sampler, strength)


def _load_clip(spec: EditSpec, cfg: ManipulateConfig, device: torch.device,
               cache: dict[tuple[str, str], tuple]) -> ClipGuide:
    model_name = spec.get("clip_model", cfg.clip_model)
    pretrained = spec.get("clip_pretrained", cfg.clip_pretrained)
    key = (model_name, pretrained)
    cache_dir = cfg.clip_cache_dir or None
    if key not in cache:
        try:
            import open_clip

            if model_name not in open_clip.list_models() and not model_name.startswith(("hf-hub:", "local-dir:")):
                raise ManipulateError(f"{spec.where('clip_model')}: unknown open_clip model {model_name!r}; "
                                      "e.g. ViT-B-32, ViT-B-16, ViT-L-14 (open_clip.list_models())")
            check_clip_weights(model_name, pretrained, cache_dir=cache_dir)
            cache[key] = load_clip(model_name, pretrained, device=device, cache_dir=cache_dir)
        except MissingCLIPWeightsError as err:
            raise ManipulateError(f"{spec.where('clip_pretrained')}: {err}") from err
    model, normalize, tokenizer = cache[key]
    try:
        text = encode_text(model, tokenizer, spec["prompt"])
    except ValueError as err:
        raise ManipulateError(f"{spec.where('prompt')}: {err}") from err
    return ClipGuide(model, normalize, text, model_name, pretrained)


def prepare_edit(spec: EditSpec, cfg: ManipulateConfig, bundle: ModelBundle, train_image: torch.Tensor | None,
                 train_image_path: Path | None = None,
                 clip_cache: dict[tuple[str, str], tuple] | None = None) -> PreparedEdit:
    """Read and check every input of ``spec``; nothing is sampled or written.

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
    train_size = bundle.train_size
    kind, o = spec.kind, spec.options
    prep = PreparedEdit(spec=spec, settings=settings, sampler=sampler, size=train_size)

    def default_input() -> tuple[torch.Tensor, Path | None]:
        if o.get("input") is not None:
            path, img = _read_image(spec, "input")
            prep.files["input"] = str(path)
            return _to_tensor(img), path
        if train_image is None:
            raise ManipulateError(f"{spec.where('input')}: the training image of the checkpoint is not available "
                                  f"({train_image_path or 'no path recorded'}); give an input image")
        if train_image_path is not None:
            prep.files["input"] = str(train_image_path)
        return train_image, None

    if kind in ("outpaint", "inpaint"):
        if kind == "inpaint" or o.get("input") is not None:
            image, path = default_input()
            native = tuple(image.shape[-2:])
            if path is not None:
                size = working_size(native, train_size)
                img = load_image(path)
                image = _to_tensor(img, size)
                if size != native:
                    prep.notes.append(f"input {native[0]}x{native[1]} resized to {size[0]}x{size[1]}")
        else:
            image, path = default_input()
            native = tuple(image.shape[-2:])
        prep.input = image
        if kind == "outpaint":
            if o.get("height") is not None or o.get("width") is not None:
                h = o.get("height") or image.shape[-2]
                w = o.get("width") or image.shape[-1]
                try:
                    canvas, mask = outpaint_to_size(image, h, w, o["anchor"])
                except ValueError as err:
                    raise ManipulateError(f"{spec.where('height' if o.get('height') else 'width')}: {err}") from err
            else:
                canvas, mask = outpaint_canvas(image, o["left"], o["right"], o["top"], o["bottom"])
            prep.reference, prep.mask = canvas, mask
        else:
            mask_path, mask = _read_mask(spec, path, native, image)
            prep.files["mask"] = str(mask_path)
            prep.reference, prep.mask = image, mask
        prep.size = tuple(prep.reference.shape[-2:])
    elif kind in ILVR_KINDS:
        path, img = _read_image(spec, "input")
        prep.files["input"] = str(path)
        native = (img.height, img.width)
        size = working_size(native, train_size, o.get("height"), o.get("width"))
        if size != native:
            prep.notes.append(f"input {native[0]}x{native[1]} resized to {size[0]}x{size[1]}")
        aspect_in, aspect_train = native[1] / native[0], train_size[1] / train_size[0]
        if abs(aspect_in / aspect_train - 1) > 0.02 and o.get("height") is None and o.get("width") is None:
            prep.notes.append(f"input aspect {aspect_in:.3f} differs from the training image's {aspect_train:.3f}: "
                              "kept the input's aspect at the training image's pixel area")
        reference = _to_tensor(img, size)
        prep.input = prep.reference = reference
        prep.size = size
        prep.factor = int(o["factor"])
        _check_factor(spec, prep.factor, size)
        if kind in MASK_KINDS:
            mask_path, mask = _read_mask(spec, path, native, reference)
            prep.files["mask"] = str(mask_path)
            prep.mask = mask
        prep.t_start = _t_start(spec, sampler)
    elif kind == "super_resolution":
        image, _ = default_input()
        scale = int(o["scale"])
        h, w = image.shape[-2:]
        prep.input = image
        prep.size = (scale * h, scale * w)
        prep.factor = scale
        _check_factor(spec, scale, prep.size, key="scale")
        prep.reference = F.interpolate(image, size=prep.size, mode="bicubic", align_corners=False).clamp(-1, 1)
    elif kind == "resize":
        th, tw = train_size
        h = o.get("height") or round(th * (o.get("scale_h") or 1.0))
        w = o.get("width") or round(tw * (o.get("scale_w") or 1.0))
        if h < 8 or w < 8:
            raise ManipulateError(f"{spec.where('scale_h' if h < 8 else 'scale_w')}: output size {h}x{w} is too "
                                  "small (minimum 8x8)")
        prep.size = (int(h), int(w))
        if o.get("factor") is not None:
            image, _ = default_input()
            prep.input = image
            prep.factor = int(o["factor"])
            _check_factor(spec, prep.factor, prep.size)
            prep.reference = F.interpolate(image, size=prep.size, mode="bicubic", align_corners=False).clamp(-1, 1)
            prep.t_start = _t_start(spec, sampler)
    elif kind == "text":
        th, tw = train_size
        prep.size = (int(o.get("height") or th), int(o.get("width") or tw))
        prep.clip = _load_clip(spec, cfg, bundle.device, clip_cache if clip_cache is not None else {})
    else:  # pragma: no cover - parse_edit rejects unknown kinds
        raise ManipulateError(f"{spec.where('kind')}: unknown kind {kind!r}")
    return prep


# ---------------------------------------------------------------------------- sampling
def _hooks(prep: PreparedEdit, num_timesteps: int) -> list:
    o = prep.spec.options
    if prep.spec.kind in ("outpaint", "inpaint"):
        until = o.get("resample_until") or 0.0
        return [KnownRegionHook(prep.reference, prep.mask, resample=o.get("resample") or 0,
                                resample_until=round(until * num_timesteps) if until > 0 else None)]
    if prep.factor is not None:
        return [ILVRHook(prep.reference, prep.factor, t_start=prep.t_start, stop_at=float(o.get("stop_at") or 0.0),
                         mask=prep.mask)]
    if prep.clip is not None:
        return [CLIPGuidanceHook(prep.clip.model, prep.clip.text_features, o["guidance_scale"], cutouts=o["cutouts"],
                                 normalize=prep.clip.normalize)]
    return []


def run_edit(prep: PreparedEdit, bundle: ModelBundle,
             progress: Callable[[int, int], None] | None = None) -> EditResult:
    """Sample ``prep.settings.num`` results with the edit's hooks (one sampling loop)."""
    s = prep.settings
    T = bundle.diffusion.num_timesteps
    samples, timings = generate(
        bundle, s.num, prep.size, prep.sampler, seed=s.seed,
        batch_size=s.batch_size, hooks_for=lambda start, end: _hooks(prep, T), t_start=prep.t_start,
        clip_x0=x0_clip_of(s), progress=progress)
    metrics: dict[str, float] = {"sample_seconds": timings["sample_seconds"],
                                 "seconds_per_sample": timings["seconds_per_sample"]}
    per_sample: dict[str, list[float]] = {}
    if prep.mask is not None and prep.reference is not None:
        keep = (prep.mask < 0.5).expand_as(samples)
        diff = (samples - prep.reference.cpu().expand_as(samples)).abs()
        metrics["known_region_max_abs_diff"] = float(diff[keep].max()) if bool(keep.any()) else 0.0
    if prep.factor is not None and prep.factor > 1 and prep.reference is not None:
        lp = LowPass(prep.factor)
        region = 1.0 if prep.mask is None else prep.mask.cpu()
        err = (lp(samples) - lp(prep.reference.cpu())).abs() * region
        denom = float((torch.ones_like(samples[:, :1]) * region).sum() * 3)
        metrics["lowpass_l1"] = float(err.sum()) / max(denom, 1.0)
    if prep.spec.kind == "super_resolution":
        down = F.interpolate(samples, size=tuple(prep.input.shape[-2:]), mode="bicubic", align_corners=False,
                             antialias=True)
        metrics["downsampled_l1"] = float((down - prep.input.cpu()).abs().mean())
    if prep.clip is not None:
        scores = clip_score(prep.clip.model, samples.to(bundle.device), prep.clip.text_features, prep.clip.normalize)
        per_sample["clip_score"] = [float(v) for v in scores]
        metrics["clip_score"] = float(scores.mean())
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
    if prep.reference is not None and (prep.input is None or prep.reference.shape != prep.input.shape
                                       or not torch.equal(prep.reference, prep.input)):
        save_image(prep.reference[0], folder / "reference.png")
        files.append("reference.png")
    if prep.mask is not None:
        save_image(prep.mask[0].expand(3, -1, -1) * 2 - 1, folder / "mask.png")
        files.append("mask.png")
    options = dict(prep.spec.options)
    meta = {
        "name": prep.spec.name, "kind": prep.spec.kind, "options": options,
        "settings": dataclasses.asdict(prep.settings), "size": list(prep.size),
        "factor": prep.factor, "t_start": prep.t_start,
        "inputs": {k: {"path": v, "sha256": sha256_file(v)} for k, v in prep.files.items()},
        "files": files, "metrics": result.metrics, "per_sample": result.per_sample, "notes": prep.notes,
    }
    if prep.clip is not None:
        meta["clip"] = {"model": prep.clip.model_name, "pretrained": prep.clip.pretrained}
    meta.update(extra or {})
    from ..stages.common import write_json

    write_json(folder / "edit.json", meta)
    return meta


def log_edit(tracker: Any, prep: PreparedEdit, result: EditResult, prefix: str = "") -> None:
    """Log an edit's inputs, result images and metrics to an MLflow tracker (no-op tracker is fine)."""
    from ..data.io import tensor_to_image

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

