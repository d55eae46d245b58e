"""A typed, validated view of ``params.yaml``.

``params.yaml`` has one section per stage (``preprocess``, ``model``, ``diffusion``, ``train``,
``sample``, ``evaluate``, ``manipulate``) plus ``data`` (which images, where results go) and
``tracking`` (MLflow). Every stage reads only the sections it needs (:data:`STAGE_SECTIONS`);
each section is a frozen dataclass, built by :func:`build_section`, which rejects unknown keys
and wrong types with a message naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .applications.config import ManipulateConfig
from .evaluation.config import EvaluateConfig
from .models.kinds import DEFAULT_KIND, MODEL_KINDS, get_kind
from .models.unet_kind import UNetSection


class ConfigError(ValueError):
    """A problem in params.yaml or an override; the message names the file and key."""


# ---------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class DataConfig:
    """Which images the pipeline runs on and where it writes.

    ``images`` empty means: every image file in ``images_dir`` (name = file stem).
    """

    images_dir: str = "data/images"
    images: tuple[str, ...] = ()
    results_dir: str = "results"


@dataclass(frozen=True)
class PreprocessConfig:
    max_size: int = 250
    """Longer side after resizing (pixels); images are never upscaled."""
    max_pixels: int = 100_000_000
    """Refuse larger inputs (decompression-bomb guard) unless ``allow_large``."""
    allow_large: bool = False


#: The ``model`` section of ``kind: unet`` (the default); other kinds have their own option classes
#: in the model-kind registry (:mod:`sindiffusion.models.kinds`).
ModelConfig = UNetSection


@dataclass(frozen=True)
class DiffusionConfig:
    timesteps: int = 1000
    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    variance: str = "fixed_large"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 50_000
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    ema_warmup: bool = False
    """If true, the EMA decay ramps as min(decay, (1 + step) / (10 + step)) (nanoGPT/diffusers style)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm (0 = off)."""
    scale_min: float = 0.75
    scale_max: float = 1.25
    """Per-axis random rescale U(scale_min, scale_max) each step (official augmentation); 1/1 = off."""
    crop_size: Optional[int] = None
    """Optional random square crop (pixels) after rescaling."""
    seed: int = 0
    log_every: int = 10
    save_every: int = 1000
    device: str = "auto"
    precision: str = "auto"
    """``auto`` = bf16 autocast on CUDA, fp32 on CPU; or ``fp32`` / ``bf16``."""
    channels_last: str = "auto"
    """``auto`` = channels_last memory format on CUDA only; or ``on`` / ``off``."""


@dataclass(frozen=True)
class SampleConfig:
    num_samples: int = 10
    batch_size: int = 10
    height: Optional[int] = None
    width: Optional[int] = None
    scale_h: float = 1.0
    scale_w: float = 1.0
    """Output size as a factor of the training image when height/width are not given."""
    sampler: str = "ddpm"
    steps: int = 1000
    eta: float = 0.0
    seed: int = 0
    use_ema: bool = True
    device: str = "auto"
    clip_x0: bool = True


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    experiment: str = "sindiffusion"
    tracking_uri: Optional[str] = None
    """None = ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db``."""
    log_checkpoint: bool = False
    """Upload the checkpoint file as an artifact (default: log its path and hash only)."""


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "preprocess": PreprocessConfig,
    "model": ModelConfig,
    "diffusion": DiffusionConfig,
    "train": TrainConfig,
    "sample": SampleConfig,
    "tracking": TrackingConfig,
    "evaluate": EvaluateConfig,
    "manipulate": ManipulateConfig,
}

#: The sections each stage reads (and declares as DVC params).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "preprocess": ("preprocess", "model"),
    "train": ("model", "diffusion", "train"),
    "sample": ("sample",),
    "evaluate": ("evaluate",),
    "manipulate": ("manipulate",),
}


def register_section(name: str, cls: type, stages: dict[str, tuple[str, ...]] | None = None) -> None:
    """Let a subsystem (evaluation, applications) add its own section and stage."""
    SECTIONS[name] = cls
    for stage, sections in (stages or {}).items():
        STAGE_SECTIONS[stage] = sections


# ---------------------------------------------------------------------------- parsing
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats, lists for tuples."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise ConfigError(f"{where}: {value!r} is not allowed; choose one of {', '.join(map(repr, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return value
    if tp is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def build_section(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from the mapping ``raw``; ``where`` (e.g. ``params.yaml: train``)
    prefixes every error message."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"{where}.{key}: unknown key{hint}")
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def build_model_section(raw: Any, path: str) -> Any:
    """The ``model`` section of the params file ``path``, for the kind named by ``kind`` (default ``unet``).

    A kind's options may be written flat in the section or nested under the kind's name, so that
    one file can hold the options of several kinds and ``--set model.kind=patch`` switches::

        model:
          kind: unet
          unet:  {preset: custom, base_channels: 32}
          patch: {patch_size: 7}

    Every nested block is validated (a typo in an unselected kind is still an error); the selected
    kind's options are then checked by the kind itself (e.g. a patch size must be odd).
    """
    where = f"{path}: model"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    flat = dict(raw)
    kind_name = flat.pop("kind", DEFAULT_KIND)
    try:
        kind = get_kind(kind_name, f"{where}.kind")
    except ValueError as err:
        raise ConfigError(str(err)) from err
    nested = {name: flat.pop(name) for name in list(flat) if name in MODEL_KINDS}
    selected = None
    for name, block in nested.items():
        block = {} if block is None else block
        if not isinstance(block, dict):
            raise ConfigError(f"{where}.{name}: expected a mapping of {name} options, got {type(block).__name__}")
        both = sorted(set(block) & set(flat))
        if name == kind_name and both:
            raise ConfigError(f"{where}: {', '.join(both)} given both in model and in model.{name}; keep one")
        options = build_section(MODEL_KINDS[name].options, {**block, "kind": name}, f"{where}.{name}")
        if name == kind_name:
            selected = build_section(kind.options, {**block, **flat, "kind": kind_name}, where)
        else:
            _check_kind(MODEL_KINDS[name], options, path, f"model.{name}")
    if selected is None:
        selected = build_section(kind.options, {**flat, "kind": kind_name}, where)
    _check_kind(kind, selected, path, "model")
    return selected


def _check_kind(kind: Any, options: Any, path: str, key: str) -> None:
    try:
        kind.check(options, key)
    except ValueError as err:  # messages name the key as "<key>.<option>: ..."
        raise ConfigError(f"{path}: {err}") from err


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` -> ``(["train", "lr"], 0.0001)``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {text!r}: the key must look like section.key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: cannot parse value: {err}") from err
    return parts, _yaml_number(parsed)


def _yaml_number(value: Any) -> Any:
    """PyYAML (YAML 1.1) reads ``1e-4`` as a string; accept it as a float like YAML 1.2 does."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in "e.") and value.strip() else value
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _yaml_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_number(v) for v in value]
    return value


@dataclass
class Params:
    """The raw, merged contents of a params file, plus where they came from."""

    raw: dict
    path: str

    def section(self, name: str) -> Any:
        """The typed, validated section ``name``."""
        if name not in SECTIONS:
            raise ConfigError(f"{self.path}: unknown section {name!r}")
        if name == "model":
            return build_model_section(self.raw.get(name), self.path)
        return build_section(SECTIONS[name], self.raw.get(name), f"{self.path}: {name}")

    def section_dict(self, name: str) -> dict:
        """The validated section as a plain dict (all keys, defaults filled in)."""
        return _plain(dataclasses.asdict(self.section(name)))

    def stage(self, stage: str) -> dict[str, Any]:
        """All sections the stage reads, validated: ``{section: dataclass}``."""
        return {name: self.section(name) for name in STAGE_SECTIONS[stage]}


def _parent(raw: dict, keys: list[str]) -> dict:
    node = raw
    for k in keys:
        node = node[k]
    return node


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_params(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read a params file and apply ``--set section.key=value`` overrides.

    Raises :class:`ConfigError` for a missing/unreadable file, invalid YAML, unknown sections
    or override keys that do not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    raw = _yaml_number(raw)
    for name in raw:
        if name not in SECTIONS:
            close = difflib.get_close_matches(str(name), list(SECTIONS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known sections: {', '.join(SECTIONS)}"
            raise ConfigError(f"{path}: unknown section {name!r}{hint}")
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] not in SECTIONS:
            raise ConfigError(f"--set {text!r}: unknown section {keys[0]!r}; known: {', '.join(SECTIONS)}")
        node = raw.setdefault(keys[0], {}) or {}
        raw[keys[0]] = node
        for i, k in enumerate(keys[1:-1], start=1):
            if not isinstance(node, dict):
                break
            node = node.setdefault(k, {})
            if node is None:  # an empty mapping written as `key:` in YAML
                node = {}
                _parent(raw, keys[:i])[k] = node
        if not isinstance(node, dict):
            raise ConfigError(f"--set {text!r}: {'.'.join(keys[:-1])} is not a mapping, cannot set {keys[-1]!r} in it")
        node[keys[-1]] = value
    return Params(raw=raw, path=str(path))
