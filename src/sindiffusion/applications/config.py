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

Every edit has a ``name`` (its output folder) and a ``kind`` (:data:`EDIT_KINDS`, one registered
application each); the other keys depend on the kind (its options dataclass). Files (``input``,
``mask``) are paths relative to the working directory (the repository root, where Snakemake and
DVC run). Errors name the key as ``params.yaml: manipulate.edits.<image>[i].<key>`` (or the
``--flag`` of a one-off command).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Optional

from ..config import SAMPLERS, KindTable, ManipulateConfig, opt
from .kind_registry import APPLICATIONS

__all__ = [
    "EDIT_KINDS",
    "EditOptions",
    "EditSpec",
    "ILVROptions",
    "ManipulateConfig",
    "ManipulateError",
    "MaskedILVROptions",
    "ResampleOptions",
    "SizeOptions",
    "edit_input_files",
    "kind_options",
    "parse_edit",
    "parse_image_edits",
    "validate_all_edits",
]


class ManipulateError(ValueError):
    """Bad input for an application (params, flags, files, checkpoint); the CLI exits with status 2."""


#: Edit kind -> its options dataclass (a subclass of :class:`EditOptions`), from the registered applications.
EDIT_KINDS = KindTable("kind", APPLICATIONS.view(lambda app: app.Options))

#: A folder name: letters, digits, ``_-.``, not starting with ``.`` or ``-``.
EDIT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


@dataclass(frozen=True, kw_only=True)
class EditOptions:
    """Keys every edit accepts; the sampling ones default (``None``) to the ``manipulate`` section's value."""

    #: The smallest valid options of the kind (besides name and kind): docs and contract tests use it.
    EXAMPLE: ClassVar[dict[str, Any]] = {}

    name: str = opt(pattern=EDIT_NAME_PATTERN, help="output folder name")
    kind: str = opt(choices=EDIT_KINDS.names, help="what the edit does")
    num: Optional[int] = opt(None, ge=1, help="samples to draw")
    seed: Optional[int] = opt(None, ge=0, help="random seed")
    sampler: Optional[str] = opt(None, choices=SAMPLERS.names, help="sampler")
    steps: Optional[int] = opt(None, ge=1, help="sampling steps")
    eta: Optional[float] = opt(None, ge=0, help="DDIM eta")
    batch_size: Optional[int] = opt(None, ge=1, help="samples per batch")

    def check(self, where: Callable[[str], str]) -> None:
        """Checks across keys (``where(key)`` spells a key in messages); raises :class:`ManipulateError`."""


def kind_options(cls: type) -> tuple[str, ...]:
    """The keys specific to an edit kind (not those of :class:`EditOptions`)."""
    common = {f.name for f in dataclasses.fields(EditOptions)}
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in common)


# Option groups shared by several kinds.
@dataclass(frozen=True, kw_only=True)
class SizeOptions:
    height: Optional[int] = opt(None, ge=8, help="output height in px (default: from the training image)")
    width: Optional[int] = opt(None, ge=8, help="output width in px")


@dataclass(frozen=True, kw_only=True)
class ResampleOptions:
    resample: int = opt(0, ge=0, help="RePaint: extra repeats of each step (smoother seams, slower)")
    resample_until: float = opt(0.0, ge=0, le=1, help="RePaint only while t >= resample_until * T (0 = every step)")


STRENGTH_HELP = "SDEdit start: noise the reference to strength * T (0, 1]"
STOP_AT_HELP = "condition only while t >= stop_at * T (more freedom near the end)"


@dataclass(frozen=True, kw_only=True)
class ILVROptions:
    factor: int = opt(4, ge=1, help="ILVR low-pass factor N (larger: only coarser structure is kept)")
    strength: float = opt(0.7, gt=0, le=1, help=STRENGTH_HELP)
    stop_at: float = opt(0.0, ge=0, le=1, help=STOP_AT_HELP)


@dataclass(frozen=True, kw_only=True)
class MaskedILVROptions(ILVROptions):
    strength: float = opt(0.6, gt=0, le=1, help=STRENGTH_HELP)


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


def parse_edit(raw: Any, origin: str, kind: str | None = None) -> EditSpec:
    """Validate one edit (a mapping from params.yaml, or the flags of a one-off command).

    Checks the kind, unknown keys (with a did-you-mean hint), types, required keys, choices and
    ranges (all from the kind's options dataclass) and the kind's checks across keys. File
    existence, sizes and masks are checked later
    (:func:`sindiffusion.applications.manipulate.prepare_edit`).
    """
    if not isinstance(raw, Mapping):
        raise ManipulateError(f"{origin}: expected a mapping like {{name: ..., kind: ...}}, got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if v is not None}  # null (or a flag not given) = the default
    if kind is not None:
        raw.setdefault("kind", kind)
    where = lambda key: key_where(origin, key)  # noqa: E731
    options = EDIT_KINDS.build(raw, origin, key_where=where, error=ManipulateError)
    options.check(where)
    values = dataclasses.asdict(options)
    name, kind_value = values.pop("name"), values.pop("kind")
    return EditSpec(name=name, kind=kind_value, options=values, origin=origin)


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
            raise ManipulateError(
                f"{spec.where('name')}: duplicate edit name {spec.name!r} (also {base}.{image}[{seen[spec.name]}])"
            )
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
