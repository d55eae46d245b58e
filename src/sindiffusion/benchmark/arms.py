"""What a benchmark compares and on which images: arms (``--arm``) and image subsets (``--images``).

An *arm* is one configuration of the pipeline under a name: a params file plus ``--set``-style
overrides, e.g. ``--arm unet=params.yaml --arm patch=configs/patch.yaml:train.steps=0``. Every arm
runs the same stages (preprocess -> train -> sample -> evaluate) on the same images, into its
own results folder ``<out>/<arm>/<image>/...``. Arms that differ only after training (sampling
settings: ``sample.steps``, ``sample.init``, ...) train once: a later arm adopts the earlier arm's
processed image and checkpoint (hard links) instead of training the same model again.

An image selection is ``1-13`` (every numeric name in the range), ``1,2,5`` (names), or a mix
(``1-3,7,sky``); names are checked against the folder before anything runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import sha256_file
from ..config import ConfigError, Params, load_params
from ..paths import find_source_image, list_images

#: names an arm may not take: the baseline methods' folders and the report's own folders
RESERVED = frozenset({"singan", "gpnn", "exsingan", "consingan", "sheets", "training", "baselines"})
#: sections that decide an arm's results (a resumed benchmark must not mix two of them)
RESULT_SECTIONS = ("preprocess", "model", "diffusion", "train", "sample", "evaluate")
#: sections that decide the trained model (arms equal in these share one training per image)
TRAIN_SECTIONS = ("preprocess", "model", "diffusion", "train")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def natural_key(name: str) -> list[Any]:
    """``"10"`` after ``"9"``: digit runs compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


@dataclass(frozen=True)
class Arm:
    """One named configuration: ``params`` file + ``overrides`` (``section.key=value`` strings)."""

    name: str
    params: Path
    overrides: tuple[str, ...] = ()

    def spec(self) -> str:
        """The ``--arm`` text that recreates this arm."""
        return f"{self.name}={self.params}" + (":" + ",".join(self.overrides) if self.overrides else "")


def parse_arm(text: str) -> Arm:
    """``NAME=PARAMS_FILE[:section.key=value,...]`` -> :class:`Arm` (ConfigError naming the part).

    A comma inside a value (``model.channel_mult=[1,2]``) stays in it: a new override starts only
    at a comma followed by ``section.key=``.
    """
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not rest.strip():
        raise ConfigError(f"--arm {text!r}: expected NAME=PARAMS_FILE[:section.key=value,...]")
    if not _NAME.match(name):
        raise ConfigError(f"--arm {text!r}: the name {name!r} must be letters, digits, '_', '-' or '.'")
    if name.lower() in RESERVED:
        raise ConfigError(f"--arm {text!r}: the name {name!r} is reserved (baselines / report folders)")
    path, _, extra = rest.partition(":")
    overrides = (
        [o.strip() for o in re.split(r",(?=\s*[A-Za-z_][\w.]*\.[\w]+\s*=)", extra) if o.strip()]
        if extra.strip()
        else []
    )
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"--arm {text!r}: override {o!r} is not section.key=value")
    return Arm(name, Path(path.strip()), tuple(overrides))


def parse_sizes(text: str) -> list[tuple[float, float]]:
    """``--sizes 1x1,1x1.5,1x2,2x1`` -> ``[(scale_h, scale_w), ...]`` (factors of the training image's
    height and width; each > 0, at most 16, no repeats). ConfigError naming the bad item."""
    sizes: list[tuple[float, float]] = []
    for item in (s.strip() for s in text.split(",")):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*x\s*(\d+(?:\.\d+)?)", item)
        if not m or not all(0 < float(v) <= 16 for v in m.groups()):
            raise ConfigError(
                f"--sizes {text!r}: {item!r} is not HxW with factors in (0, 16] of the training image "
                "(e.g. 1x1,1x1.5,1x2,2x1)"
            )
        size = (float(m.group(1)), float(m.group(2)))
        if size in sizes:
            raise ConfigError(f"--sizes {text!r}: {item!r} is given twice")
        sizes.append(size)
    return sizes


def size_label(scale_h: float, scale_w: float) -> str:
    """``(1, 1.5)`` -> ``"1x1.5"``: the suffix of a sized arm's name (``patch@1x1.5``)."""
    return f"{scale_h:g}x{scale_w:g}"


def with_sizes(arms: Sequence[Arm], sizes: Sequence[tuple[float, float]]) -> list[Arm]:
    """Every arm at every size: ``NAME@HxW`` with the sample size overrides appended (an explicit
    ``sample.height``/``width`` is cleared). Arms equal but for the size share one trained model
    (the benchmark trains once per model fingerprint, :data:`TRAIN_SECTIONS`)."""
    out = []
    for arm in arms:
        for h, w in sizes:
            size = (f"sample.scale_h={h:g}", f"sample.scale_w={w:g}", "sample.height=null", "sample.width=null")
            out.append(Arm(f"{arm.name}@{size_label(h, w)}", arm.params, (*arm.overrides, *size)))
    return out


def check_arms(arms: Sequence[Arm]) -> None:
    names = [a.name for a in arms]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"--arm: names must be unique, repeated: {', '.join(dup)}")


def arm_params(arm: Arm, common: Sequence[str], images_dir: str | Path, out: str | Path) -> Params:
    """The arm's params: its file, then the benchmark-wide ``common`` overrides, then the arm's own;
    ``data`` pointed at ``images_dir`` / ``<out>/<arm>`` and tracking at ``<experiment>-benchmark-<arm>``
    (each image's MLflow parent run then belongs to one arm). Every section is validated here,
    before anything runs."""
    try:
        params = load_params(arm.params, [*common, *arm.overrides])
    except ConfigError as err:
        raise ConfigError(f"--arm {arm.name}: {err}") from err
    data = dict(params.raw.get("data") or {})
    data.update(images_dir=str(images_dir), results_dir=str(Path(out) / arm.name), images=[])
    params.raw["data"] = data
    overridden = any(o.strip().startswith("tracking.experiment=") for o in [*common, *arm.overrides])
    tracking = dict(params.raw.get("tracking") or {})
    if not overridden:
        tracking["experiment"] = f"{tracking.get('experiment', 'sindiffusion')}-benchmark-{arm.name}"
    params.raw["tracking"] = tracking
    for section in ("data", *RESULT_SECTIONS, "tracking"):
        try:
            params.section(section)
        except ConfigError as err:
            raise ConfigError(f"--arm {arm.name}: {err}") from err
    return params


def arm_settings(params: Params) -> dict[str, dict]:
    """The validated sections that decide an arm's results (device choices included: they change timings)."""
    return {s: params.section_dict(s) for s in RESULT_SECTIONS}


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def changed_settings(params: Params, sections: Sequence[str] = RESULT_SECTIONS) -> dict[str, dict]:
    """The keys of ``sections`` whose value differs from the section's declared default (``kind``
    always kept: two kinds at their defaults are not the same model).

    This, not every key, is what a result is identified by: an option added in a later version,
    with a default that keeps the old behaviour, leaves every earlier benchmark result reusable.
    """
    out: dict[str, dict] = {}
    for name in sections:
        section = params.section(name)
        values = _json(dataclasses.asdict(section))
        try:
            defaults = _json(dataclasses.asdict(type(section)()))
        except TypeError:  # a section with required keys: every value counts
            defaults = {}
        out[name] = {k: v for k, v in values.items() if k == "kind" or k not in defaults or defaults[k] != v}
    return out


def _hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint(params: Params, sections: Sequence[str] = RESULT_SECTIONS) -> str:
    """Short hash of :func:`changed_settings`: a per-image result is reused only under the same one."""
    return _hash(changed_settings(params, sections))


def legacy_fingerprint(params: Params) -> str:
    """The hash of every key of :func:`arm_settings` that results written before :func:`fingerprint`
    dropped default values carry; still accepted, so those results stay reusable."""
    return _hash(arm_settings(params))


def source_digests(images_dir: str | Path, names: Sequence[str]) -> dict[str, str]:
    """``{name: sha256 of its file in images_dir}``: what a per-image result was made from.

    Settings fingerprints say *how* a result was made; this says *from what*: the same name taken
    from another folder (or an image edited in place) is another image, and no earlier result of
    the name may stand for it.
    """
    return {name: sha256_file(find_source_image(images_dir, name)) for name in names}


def same_source(recorded: Any, digest: str) -> bool:
    """Whether a result that recorded ``recorded`` (its ``source_sha256``) was made from the file whose
    digest is ``digest``. A result without one (written before digests were recorded) is accepted."""
    return recorded is None or recorded == digest


def select_images(images_dir: str | Path, selection: str | None = None, limit: int | None = None) -> list[str]:
    """Image names of ``images_dir`` in natural order, restricted to ``selection`` and the first ``limit``.

    ``selection``: comma-separated items, each a name or ``A-B`` (both integers: every numeric
    name ``A <= n <= B`` present). A name or range that matches nothing is an error (ValueError),
    so a typo cannot silently shrink a benchmark.
    """
    names = sorted(list_images(images_dir), key=natural_key)
    if not names:
        raise FileNotFoundError(f"{images_dir}: no image files found")
    if selection is not None and selection.strip():
        chosen: list[str] = []
        for item in (s.strip() for s in selection.split(",")):
            m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", item)
            if m and item not in names:
                lo, hi = int(m.group(1)), int(m.group(2))
                if lo > hi:
                    raise ValueError(f"--images {selection!r}: range {item!r} is empty (start > end)")
                hits = [n for n in names if n.isdigit() and lo <= int(n) <= hi]
                if not hits:
                    raise ValueError(f"--images {selection!r}: no image of {images_dir} is numbered {item}")
            elif item in names:
                hits = [item]
            else:
                raise ValueError(
                    f"--images {selection!r}: {item!r} is not an image of {images_dir} "
                    f"(have: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''})"
                )
            chosen += [h for h in hits if h not in chosen]
        names = sorted(chosen, key=natural_key)
    return names[:limit] if limit else names
