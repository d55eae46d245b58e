"""The application registry: one class per edit kind, and what the classes share.

An application (:class:`Application`) is registered in :data:`APPLICATIONS` under its kind and
says everything about it in one module of :mod:`sindiffusion.applications.kinds`: its options
(a dataclass of :mod:`.config`, checked at load time), its command-line name and help, how it
reads and checks its inputs (:meth:`Application.prepare`), the sampling-loop hooks it adds
(:meth:`Application.hooks`) and the metrics it reports (:meth:`Application.metrics`). The
``manipulate`` stage, the one-off commands, the config validation and the docs table are
derived from the registry.

The helpers below read and check input files; their errors name the params key or ``--flag``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from PIL import Image

from ..config import field_rules
from ..data.io import ImageError, image_to_tensor, load_image, open_image
from ..diffusion import Sampler, SamplingHook
from .config import EditOptions, EditSpec, ManipulateConfig, ManipulateError
from .ilvr import ILVRHook, LowPass, sdedit_timestep
from .kind_registry import APPLICATIONS
from .known_region import mask_from_image, validate_mask

if TYPE_CHECKING:
    from ..generate import ModelBundle


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


@dataclass
class EditContext:
    """What :meth:`Application.prepare` may use besides the edit itself."""

    cfg: ManipulateConfig
    bundle: "ModelBundle"
    train_image: torch.Tensor | None
    """The processed training image ``[1, 3, H, W]``, or ``None`` if unavailable."""
    train_image_path: Path | None = None
    clip_cache: dict[tuple[str, str], tuple] = field(default_factory=dict)

    def default_input(self, prep: PreparedEdit) -> tuple[torch.Tensor, Path | None]:
        """The edit's ``input`` file, else the training image; ``(tensor [1, 3, H, W], path or None)``."""
        spec = prep.spec
        if spec.get("input") is not None:
            path, img = read_image(spec, "input")
            prep.files["input"] = str(path)
            return to_tensor(img), path
        if self.train_image is None:
            raise ManipulateError(
                f"{spec.where('input')}: the training image of the checkpoint is not available "
                f"({self.train_image_path or 'no path recorded'}); give an input image"
            )
        if self.train_image_path is not None:
            prep.files["input"] = str(self.train_image_path)
        return self.train_image, None


class Application:
    """One edit kind. Subclasses set the class attributes and override what they need."""

    name: ClassVar[str]
    """The kind (``kind:`` in params.yaml)."""
    help: ClassVar[str]
    """One line for ``--help`` and the docs."""
    hooks_doc: ClassVar[str] = "none"
    """The hooks it adds, in words (docs table)."""
    Options: ClassVar[type[EditOptions]]
    """Its keys: a dataclass of :class:`~.config.EditOptions` with types, ranges and defaults."""
    reference_alias: ClassVar[bool] = False
    """Accept ``--reference`` as an alias of ``--input`` on the command line."""

    @classmethod
    def command(cls) -> str:
        """The one-off command: the kind with ``-`` for ``_`` (``super_resolution`` -> ``super-resolve``
        is the one historical exception, set by that class)."""
        return cls.name.replace("_", "-")

    def prepare(self, prep: PreparedEdit, ctx: EditContext) -> None:
        """Read and check the inputs; set ``prep``'s size, input, reference, mask, factor, t_start, ...
        Raise :class:`ManipulateError` naming the key; sample and write nothing.

        Default: the output size is the edit's ``height``/``width``, else the training image's."""
        th, tw = ctx.bundle.train_size
        prep.size = (int(prep.spec.get("height") or th), int(prep.spec.get("width") or tw))

    def hooks(self, prep: PreparedEdit, num_timesteps: int) -> list[SamplingHook]:
        """The sampling-loop hooks of one batch (default: an ILVR hook when the edit has a factor)."""
        if prep.factor is None:
            return []
        return [
            ILVRHook(
                prep.reference,
                prep.factor,
                t_start=prep.t_start,
                stop_at=float(prep.spec.get("stop_at") or 0.0),
                mask=prep.mask,
            )
        ]

    def metrics(
        self, prep: PreparedEdit, samples: torch.Tensor, bundle: "ModelBundle"
    ) -> tuple[dict[str, float], dict[str, list[float]]]:
        """``(metrics, per-sample lists)`` of the results ``[num, 3, H, W]`` in [-1, 1] (CPU).

        Default: how exactly the kept region equals the reference (when there is a mask) and how
        close the low frequencies are to the reference (when there is an ILVR factor)."""
        metrics: dict[str, float] = {}
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
        return metrics, {}


def applications() -> list[type[Application]]:
    """Every registered application class, in registration order."""
    return [cls for _, cls in APPLICATIONS.items()]


def _key_doc(f: dataclasses.Field, allowed: tuple[str, ...] | None) -> str:
    if f.default is dataclasses.MISSING:
        return f"**`{f.name}`**"
    default = f.default
    if default is None:
        return f"`{f.name}`"
    shown = (
        str(default).lower()
        if isinstance(default, bool)
        else f"{default:g}"
        if isinstance(default, float)
        else (str(default))
    )
    return f"`{f.name}` [{shown}" + (f"; {', '.join(c for c in allowed if c != default)}]" if allowed else "]")


def kinds_keys_doc() -> str:
    """The keys of every edit kind as markdown bullets (defaults in brackets, **bold** = required; docs)."""
    common = {f.name for f in dataclasses.fields(EditOptions)}

    def keys(cls: type, names: set[str] | None) -> str:
        rules = field_rules(cls)
        return ", ".join(
            _key_doc(f, rules[f.name].choices)
            for f in dataclasses.fields(cls)
            if (f.name in names if names is not None else f.name not in common)
        )

    lines = [f"* every edit: {keys(EditOptions, common)}."]
    lines += [f"* `{a.name}`: {keys(a.Options, None)}." for a in applications()]
    return "\n".join(lines) + "\n"


def kinds_table() -> str:
    """The markdown table of docs/applications.md (a test keeps the docs equal to it)."""
    rows = ["| kind | command | what it does | hooks |", "| --- | --- | --- | --- |"]
    rows += [f"| `{a.name}` | `sindiffusion {a.command()}` | {a.help} | {a.hooks_doc} |" for a in applications()]
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------- input helpers
def read_file(spec: EditSpec, key: str) -> Path:
    path = Path(str(spec[key]))
    if not path.is_file():
        raise ManipulateError(
            f"{spec.where(key)}: {path}: file not found"
            + (" (paths are relative to the repository root)" if not path.is_absolute() else "")
        )
    return path


def read_image(spec: EditSpec, key: str) -> tuple[Path, Any]:
    path = read_file(spec, key)
    try:
        return path, load_image(path)
    except ImageError as err:
        raise ManipulateError(f"{spec.where(key)}: {err}") from err


def to_tensor(img: Any, size: tuple[int, int] | None = None) -> torch.Tensor:
    if size is not None and (img.height, img.width) != tuple(size):
        img = img.resize((int(size[1]), int(size[0])), Image.LANCZOS)
    return image_to_tensor(img)[None]


def working_size(
    native: tuple[int, int],
    train: tuple[int, int],
    height: int | None = None,
    width: int | None = None,
    tolerance: float = 0.02,
) -> tuple[int, int]:
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


def check_factor(spec: EditSpec, factor: int, size: tuple[int, int], key: str = "factor") -> None:
    try:
        LowPass(factor).check(*size)
    except ValueError as err:
        raise ManipulateError(f"{spec.where(key)}: {err}") from err


def read_mask(
    spec: EditSpec, image_path: Path | None, native: tuple[int, int], like: torch.Tensor
) -> tuple[Path, torch.Tensor]:
    """Mask file -> ``[1, 1, H, W]`` at ``like``'s size; its own size must equal the image's ``native``."""
    path = read_file(spec, "mask")
    try:
        img = open_image(path)  # the checks of every input image: truncated, corrupt, a decompression bomb
    except ImageError as err:
        raise ManipulateError(f"{spec.where('mask')}: {err}") from err
    mw, mh = img.size
    if (mh, mw) != tuple(native):
        what = image_path if image_path is not None else "the training image"
        raise ManipulateError(
            f"{spec.where('mask')}: mask size {mh}x{mw} (HxW) does not match the image size {native[0]}x{native[1]} "
            f"of {what}; draw the mask on that image"
        )
    invert = bool(spec.get("invert_mask", False))
    try:
        validate_mask(mask_from_image(img, invert=invert), torch.zeros(1, 1, mh, mw))
        mask = mask_from_image(img, size=tuple(like.shape[-2:]), invert=invert)
        mask = validate_mask(mask, like)
    except ValueError as err:
        raise ManipulateError(f"{spec.where('mask')}: {path}: {err}") from err
    return path, mask


def sdedit_start(spec: EditSpec, sampler: Sampler) -> int | None:
    strength = spec.get("strength")
    return None if strength is None else sdedit_timestep(sampler, strength)
