"""The ``manipulate`` section of params.yaml and the validation of one edit.

Shape of the section::

    manipulate:
      sampler: ddim            # defaults for every edit (each edit may override them)
      steps: 100
      eta: 1.0
      seed: 0
      num: 1                   # samples per edit (result.png is the first)
      batch_size: 4
      use_ema: true
      device: auto
      clip_model: ViT-B-32     # text edits: open_clip architecture ...
      clip_pretrained: openai  # ... and pretrained tag or local weights file
      edits:                   # per training image: a list of named edits
        hubble:
          - {name: wide, kind: outpaint, right: 64}
          - {name: sr2, kind: super_resolution, scale: 2}

Every edit has a ``name`` (its output folder) and a ``kind`` (:data:`KINDS`); the other keys
depend on the kind (:data:`KIND_KEYS`). Files (``input``, ``mask``) are paths relative to the
working directory (the repository root, where Snakemake and DVC run). Errors name the key as
``params.yaml: manipulate.edits.<image>[i].<key>`` (or the ``--flag`` of a one-off command).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

from ..diffusion.x0 import check_x0_options
from ..validation import check_choice
from .known_region import ANCHORS

__all__ = ["COMMON_KEYS", "EditSpec", "KIND_KEYS", "KINDS", "ManipulateConfig", "ManipulateError", "edit_input_files",
           "parse_edit", "parse_image_edits", "validate_all_edits"]


class ManipulateError(ValueError):
    """Bad input for an application (params, flags, files, checkpoint); the CLI exits with status 2."""


@dataclass(frozen=True)
class ManipulateConfig:
    """``params.yaml: manipulate`` -- sampling defaults plus the per-image list of edits."""

    sampler: str = "ddim"
    steps: int = 100
    eta: float = 1.0
    seed: int = 0
    num: int = 1
    """Samples per edit; ``result.png`` is the first, all are in ``samples/`` when > 1."""
    batch_size: int = 4
    clip_x0: Union[bool, str] = True
    """What each step does to the predicted x0 (``false``, ``true`` = clamp, official, ``dynamic``,
    ``low_noise``); as params.yaml's sample.clip_x0."""
    clip_x0_percentile: float = 0.995
    clip_x0_low_noise: float = 0.2
    precision: str = "auto"
    """``auto`` = bf16 autocast on CUDA and on CPUs with native bf16, else fp32; or ``fp32`` / ``bf16``."""
    use_ema: bool = True
    device: str = "auto"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    """An open_clip pretrained tag (Hugging Face cache) or a local weights file."""
    clip_cache_dir: str = ""
    """Where tags are downloaded / looked up ("" = the Hugging Face hub cache)."""
    edits: dict = field(default_factory=dict)
    """``{image name: [ {name, kind, ...}, ... ]}``."""

    def __post_init__(self) -> None:
        check_x0_options(self)
        check_choice("precision", self.precision, ("auto", "fp32", "bf16"))


KINDS = ("text", "outpaint", "inpaint", "paint", "harmonize", "edit", "super_resolution", "resize")


@dataclass(frozen=True)
class Key:
    """One option of an edit: its type, default and whether it is required."""

    type: type
    default: Any = None
    required: bool = False
    help: str = ""


#: Keys every edit accepts (``None`` = take the section's value).
COMMON_KEYS: dict[str, Key] = {
    "name": Key(str, required=True, help="output folder name"),
    "kind": Key(str, required=True, help="one of " + ", ".join(KINDS)),
    "num": Key(int, help="samples to draw"),
    "seed": Key(int, help="random seed"),
    "sampler": Key(str, help="ddpm or ddim"),
    "steps": Key(int, help="sampling steps"),
    "eta": Key(float, help="DDIM eta"),
    "batch_size": Key(int, help="samples per batch"),
}

_SIZE = {
    "height": Key(int, help="output height in px (default: from the training image)"),
    "width": Key(int, help="output width in px"),
}
_RESAMPLE = {
    "resample": Key(int, 0, help="RePaint: extra repeats of each step (smoother seams, slower)"),
    "resample_until": Key(float, 0.0, help="RePaint only while t >= resample_until * T (0 = every step)"),
}
_ILVR = {
    "factor": Key(int, 4, help="ILVR low-pass factor N (larger: only coarser structure is kept)"),
    "strength": Key(float, 0.7, help="SDEdit start: noise the reference to strength * T (0, 1]"),
    "stop_at": Key(float, 0.0, help="condition only while t >= stop_at * T (more freedom near the end)"),
}

#: Kind-specific keys.
KIND_KEYS: dict[str, dict[str, Key]] = {
    "text": {
        "prompt": Key(str, required=True, help="what the image should show"),
        "guidance_scale": Key(float, 1000.0, help="CLIP guidance scale s of eq. (5)"),
        "cutouts": Key(int, 8, help="random crops of x0 fed to CLIP per step"),
        "clip_model": Key(str, help="open_clip architecture (default: manipulate.clip_model)"),
        "clip_pretrained": Key(str, help="pretrained tag or local weights file (default: manipulate.clip_pretrained)"),
        **_SIZE,
    },
    "outpaint": {
        "left": Key(int, 0, help="pixels to add on the left"),
        "right": Key(int, 0, help="pixels to add on the right"),
        "top": Key(int, 0, help="pixels to add on the top"),
        "bottom": Key(int, 0, help="pixels to add on the bottom"),
        **_SIZE,
        "anchor": Key(str, "center", help="where the image sits on a height x width canvas: " + ", ".join(ANCHORS)),
        "input": Key(str, help="image to extend (default: the training image)"),
        **_RESAMPLE,
    },
    "inpaint": {
        "mask": Key(str, required=True, help="mask file, white = region to regenerate"),
        "input": Key(str, help="image to fill (default: the training image)"),
        "invert_mask": Key(bool, False, help="black = region to regenerate"),
        **_RESAMPLE,
    },
    "paint": {
        "input": Key(str, required=True, help="the rough painting"),
        **_ILVR,
        **_SIZE,
    },
    "harmonize": {
        "input": Key(str, required=True, help="the naive composite"),
        "mask": Key(str, required=True, help="mask file, white = the pasted object"),
        "invert_mask": Key(bool, False, help="black = the pasted object"),
        **_ILVR,
        "strength": Key(float, 0.6, help="SDEdit start: noise the reference to strength * T (0, 1]"),
        **_SIZE,
    },
    "edit": {
        "input": Key(str, required=True, help="the edited image"),
        "mask": Key(str, required=True, help="mask file, white = the edited region"),
        "invert_mask": Key(bool, False, help="black = the edited region"),
        **_ILVR,
        "strength": Key(float, 0.6, help="SDEdit start: noise the reference to strength * T (0, 1]"),
        **_SIZE,
    },
    "super_resolution": {
        "scale": Key(int, required=True, help="integer upscaling factor k >= 2"),
        "input": Key(str, help="low-resolution image, used at its own size (default: the training image)"),
        "stop_at": Key(float, 0.0, help="condition only while t >= stop_at * T"),
    },
    "resize": {
        **_SIZE,
        "scale_h": Key(float, help="height as a factor of the training image"),
        "scale_w": Key(float, help="width as a factor of the training image"),
        "factor": Key(int, help="optional: keep the layout of the resized training image (ILVR factor N)"),
        "strength": Key(float, help="optional with factor: SDEdit start from the resized training image"),
        "stop_at": Key(float, 0.0, help="with factor: condition only while t >= stop_at * T"),
    },
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}


@dataclass(frozen=True)
class EditSpec:
    """One validated edit: ``name``, ``kind`` and every option of that kind (defaults filled in).

    ``origin`` says where it came from, for error messages: ``"params.yaml: manipulate.edits.cows[0]"``,
    or ``"--"`` for the flags of a one-off command (then key ``mask`` is reported as ``--mask``).
    """

    name: str
    kind: str
    options: Mapping[str, Any]
    origin: str

    def where(self, key: str) -> str:
        return key_where(self.origin, key)

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.options.get(key)
        return default if value is None else value

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, **dict(self.options)}


def key_where(origin: str, key: str) -> str:
    if origin == "--":
        return "--" + key.replace("_", "-")
    return f"{origin}.{key}"


def _coerce(value: Any, key: Key, where: str) -> Any:
    if value is None:
        if key.required:
            raise ManipulateError(f"{where}: required ({key.help})")
        return key.default
    tp = key.type
    ok = (isinstance(value, bool) if tp is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if tp is float else
          isinstance(value, int) and not isinstance(value, bool) if tp is int else isinstance(value, tp))
    if not ok:
        raise ManipulateError(f"{where}: expected {_TYPE_WORDS[tp]}, got {type(value).__name__} {value!r}")
    return float(value) if tp is float else value


def parse_edit(raw: Any, origin: str, kind: str | None = None) -> EditSpec:
    """Validate one edit (a mapping from params.yaml, or the flags of a one-off command).

    Checks the kind, unknown keys (with a did-you-mean hint), types, required keys and value
    ranges that do not depend on files. File existence, sizes and masks are checked later
    (:func:`sindiffusion.applications.manipulate.prepare_edit`).
    """
    if not isinstance(raw, Mapping):
        raise ManipulateError(f"{origin}: expected a mapping like {{name: ..., kind: ...}}, got {type(raw).__name__}")
    raw = dict(raw)
    if kind is not None:
        raw.setdefault("kind", kind)
    kind_value = raw.get("kind")
    if kind_value is None:
        raise ManipulateError(f"{key_where(origin, 'kind')}: required; one of {', '.join(KINDS)}")
    if kind_value not in KINDS:
        close = difflib.get_close_matches(str(kind_value), KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ManipulateError(f"{key_where(origin, 'kind')}: unknown kind {kind_value!r}{hint}; "
                              f"choose one of {', '.join(KINDS)}")
    schema = {**COMMON_KEYS, **KIND_KEYS[kind_value]}
    for k in raw:
        if k not in schema:
            close = difflib.get_close_matches(str(k), list(schema), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; keys of kind {kind_value!r}: {', '.join(schema)}"
            raise ManipulateError(f"{key_where(origin, str(k))}: unknown key for kind {kind_value!r}{hint}")
    values = {k: _coerce(raw.get(k), spec, key_where(origin, k)) for k, spec in schema.items()}
    name = values.pop("name")
    values.pop("kind")
    if not _NAME_RE.match(name):
        raise ManipulateError(f"{key_where(origin, 'name')}: {name!r} is not a usable folder name "
                              "(letters, digits, '_', '-', '.'; not starting with '.' or '-')")
    spec = EditSpec(name=name, kind=kind_value, options=values, origin=origin)
    _check_ranges(spec)
    return spec


def _check_ranges(spec: EditSpec) -> None:
    o, w = spec.options, spec.where

    def positive(key: str, minimum: int | float = 1) -> None:
        if o.get(key) is not None and o[key] < minimum:
            raise ManipulateError(f"{w(key)}: must be >= {minimum}, got {o[key]!r}")

    for key in ("num", "steps", "batch_size"):
        positive(key)
    if o.get("seed") is not None and o["seed"] < 0:
        raise ManipulateError(f"{w('seed')}: must be >= 0, got {o['seed']!r}")
    if o.get("eta") is not None and o["eta"] < 0:
        raise ManipulateError(f"{w('eta')}: must be >= 0, got {o['eta']!r}")
    if o.get("sampler") is not None and o["sampler"] not in ("ddpm", "ddim"):
        raise ManipulateError(f"{w('sampler')}: unknown sampler {o['sampler']!r}; choose ddpm or ddim")
    for key in ("height", "width"):
        positive(key, 8)
    for key in ("scale_h", "scale_w"):
        if o.get(key) is not None and o[key] <= 0:
            raise ManipulateError(f"{w(key)}: must be > 0, got {o[key]!r}")
    if o.get("factor") is not None and o["factor"] < 1:
        raise ManipulateError(f"{w('factor')}: the low-pass factor N must be an integer >= 1, got {o['factor']!r}")
    if o.get("strength") is not None and not 0.0 < o["strength"] <= 1.0:
        raise ManipulateError(f"{w('strength')}: must be in (0, 1], got {o['strength']!r}")
    for key in ("stop_at", "resample_until"):
        if o.get(key) is not None and not 0.0 <= o[key] <= 1.0:
            raise ManipulateError(f"{w(key)}: a fraction of the diffusion steps, must be in [0, 1], got {o[key]!r}")
    if o.get("resample") is not None and o["resample"] < 0:
        raise ManipulateError(f"{w('resample')}: must be >= 0, got {o['resample']!r}")
    for key in ("input", "mask", "clip_model", "clip_pretrained"):
        if key in o and o[key] is not None and not str(o[key]).strip():
            raise ManipulateError(f"{w(key)}: is empty")

    if spec.kind == "text":
        if not o["prompt"].strip():
            raise ManipulateError(f"{w('prompt')}: the prompt is empty; describe the image, e.g. "
                                  "'a photo of a mountain at sunset'")
        if o["guidance_scale"] < 0:
            raise ManipulateError(f"{w('guidance_scale')}: must be >= 0, got {o['guidance_scale']!r}")
        positive("cutouts")
    elif spec.kind == "outpaint":
        pads = {k: o[k] for k in ("left", "right", "top", "bottom")}
        for k, v in pads.items():
            if v < 0:
                raise ManipulateError(f"{w(k)}: must be >= 0 pixels, got {v!r}")
        by_size = o.get("height") is not None or o.get("width") is not None
        if by_size and any(pads.values()):
            raise ManipulateError(f"{w('height')}: give either left/right/top/bottom or height/width, not both")
        if not by_size and not any(pads.values()):
            raise ManipulateError(f"{w('right')}: outpainting needs left/right/top/bottom > 0 or a target "
                                  "height/width")
        if o["anchor"] not in ANCHORS:
            raise ManipulateError(f"{w('anchor')}: unknown anchor {o['anchor']!r}; choose one of {', '.join(ANCHORS)}")
    elif spec.kind == "super_resolution":
        if o["scale"] < 2:
            raise ManipulateError(f"{w('scale')}: the super-resolution scale must be an integer >= 2, got {o['scale']!r}")
    elif spec.kind == "resize":
        if all(o.get(k) is None for k in ("height", "width", "scale_h", "scale_w")):
            raise ManipulateError(f"{w('width')}: resize needs height/width (px) or scale_h/scale_w")
        for px, sc in (("height", "scale_h"), ("width", "scale_w")):
            if o.get(px) is not None and o.get(sc) is not None:
                raise ManipulateError(f"{w(sc)}: give {px} or {sc}, not both")
        if o.get("strength") is not None and o.get("factor") is None:
            raise ManipulateError(f"{w('strength')}: only used with factor (layout-preserving resize)")


def parse_image_edits(cfg: ManipulateConfig, image: str, source: str = "params.yaml") -> list[EditSpec]:
    """The validated edits listed for ``image`` (``[]`` when there are none); names must be unique."""
    base = f"{source}: manipulate.edits"
    if not isinstance(cfg.edits, Mapping):
        raise ManipulateError(f"{base}: expected a mapping of image name -> list of edits")
    items = cfg.edits.get(image)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ManipulateError(f"{base}.{image}: expected a list of edits, got {type(items).__name__}")
    specs: list[EditSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(items):
        spec = parse_edit(raw, f"{base}.{image}[{i}]")
        if spec.name in seen:
            raise ManipulateError(f"{spec.where('name')}: duplicate edit name {spec.name!r} "
                                  f"(also {base}.{image}[{seen[spec.name]}])")
        seen[spec.name] = i
        specs.append(spec)
    return specs


def validate_all_edits(cfg: ManipulateConfig, source: str = "params.yaml") -> dict[str, list[EditSpec]]:
    """Parse the edits of every image (structure only): a typo anywhere is reported at once."""
    if not isinstance(cfg.edits, Mapping):
        raise ManipulateError(f"{source}: manipulate.edits: expected a mapping of image name -> list of edits")
    return {str(image): parse_image_edits(cfg, str(image), source) for image in cfg.edits}


def edit_input_files(section: Any, image: str) -> list[str]:
    """The files (``input``, ``mask``) the edits of ``image`` read, from the *raw* ``manipulate`` section.

    For workflow managers (Snakemake inputs): tolerant of malformed entries, which the stage
    itself reports with a clear error.
    """
    edits = (section or {}).get("edits") if isinstance(section, Mapping) else None
    items = edits.get(image) if isinstance(edits, Mapping) else None
    files: list[str] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            for key in ("input", "mask"):
                value = item.get(key)
                if isinstance(value, str) and value.strip() and value not in files:
                    files.append(value)
    return files
