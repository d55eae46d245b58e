"""One-command benchmark over a folder of images (e.g. Places50): arms side by side with baselines.

``run_benchmark`` runs every *arm* (:mod:`.arms`: a params file + overrides under a name; by
default one arm, ``sindiffusion``, from ``--params``) through the pipeline's own stage functions,
preprocess -> train -> sample -> evaluate, on every selected image, into ``<out>/<arm>/<image>/...``
(timed and resumable: :mod:`.per_image`). Published samples of other methods (``baselines``: one
subfolder per method, file ``<image>.<ext>`` = one sample of the same training image) are resized
to the first arm's processed training image (bicubic, antialiased: the scale the arms' samples are
scored at) and scored with the weight-free metrics and the brightness check. Then, in ``out``:

* ``sheets/<image>.png``: contact sheet (training image, 4 samples per arm, the baselines);
* ``benchmark.md`` / ``.csv`` / ``.png`` / ``.json``: per image and mean of every arm and baseline
  (:mod:`.report`), plus the paper's Table 1;

all logged to MLflow (experiment ``<tracking.experiment>-benchmark``; each arm's stage runs go to
``<tracking.experiment>-benchmark-<arm>``). Partial runs (``--images 1-13``, ``--images 14-25``)
merge with :func:`.report.merge_results` into the tables one run would give.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import ConfigError, Params
from ..evaluation import resize_to
from ..evaluation.registry import metric_keys
from ..paths import IMAGE_SUFFIXES, ImagePaths, find_source_image
from ..runtime import Preempted, resolve_device
from ..stages import evaluate
from ..stages.evaluate import compute, load_unit, sample_files
from ..tracking import stage_run
from . import report
from .arms import (
    TRAIN_SECTIONS,
    Arm,
    arm_params,
    arm_settings,
    check_arms,
    fingerprint,
    legacy_fingerprint,
    natural_key,
    same_source,
    select_images,
    source_digests,
    with_sizes,
)
from .per_image import BRIGHTNESS_TOLERANCE, brightness_stats, row_path, run_image
from .sheets import image_sheet

#: the arm name when no ``--arm`` is given (``--params`` + ``--set``)
OURS = "sindiffusion"
BASELINE_NAMES = {
    "singan": "SinGAN",
    "gpnn": "GPNN",
    "exsingan": "ExSinGAN",
    "consingan": "ConSinGAN",
    "sindiffusion": "SinDiffusion",
}
__all__ = ["OURS", "benchmark_images", "natural_key", "run_benchmark"]


def benchmark_images(images_dir: str | Path, limit: int | None = None, selection: str | None = None) -> list[str]:
    """Names of ``images_dir`` in natural order (``--images`` selection, first ``limit``)."""
    return select_images(images_dir, selection, limit)


def metric_columns(params: Params) -> list[str]:
    """Every registered metric's keys under the ``evaluate`` section (registry order), then :data:`report.EXTRA`."""

    return [*metric_keys(params.section("evaluate")), *report.EXTRA]


def find_baseline(folder: Path, name: str) -> Path | None:
    hits = [p for p in sorted(folder.glob(f"{name}.*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    return hits[0] if hits else None


def baseline_methods(baselines: str | Path) -> list[tuple[str, Path]]:
    """``[(method label, folder)]`` of a baselines folder (one subfolder per method)."""
    root = Path(baselines)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: baselines folder not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise FileNotFoundError(f"{root}: no method subfolders (expected e.g. singan/, gpnn/)")
    return [(BASELINE_NAMES.get(f.name.lower(), f.name), f) for f in folders]


def score_baselines(
    params: Params, names: Sequence[str], methods: Sequence[tuple[str, Path]], processed: dict[str, Path]
) -> tuple[list[dict], list[str]]:
    """Weight-free metrics + brightness of published samples, one row per (method, image) found.

    Each sample is resized to ``processed[image]`` (a processed training image) and compared with
    it. Returns ``(rows, notes)``.
    """

    rows, notes = [], []
    for method, folder in methods:
        for name in names:
            sample = find_baseline(folder, name)
            if sample is None or name not in processed:
                notes.append(f"{method}/{name}: skipped ({'no sample' if sample is None else 'no processed image'})")
                continue
            real = load_unit(processed[name])
            fake = load_unit(sample)
            original = list(fake.shape[-2:])
            fake = resize_to(fake, tuple(real.shape[-2:]))
            m = compute(params, real, fake, deep=False)
            m["sample_size"], m["scored_size"] = original, list(real.shape[-2:])
            rows.append(
                {
                    "kind": "image",
                    "method": method,
                    "image": name,
                    "source": str(sample),
                    **m,
                    **brightness_stats(real, fake),
                    "n_samples": 1,
                }
            )
    return rows, notes


def _arm_info(arm: Arm, params: Params) -> dict[str, Any]:
    settings = arm_settings(params)
    return {
        "spec": arm.spec(),
        "fingerprint": fingerprint(params),
        "kind": settings["model"].get("kind", "unet"),
        "max_size": settings["preprocess"]["max_size"],
        "train_steps": settings["train"]["steps"],
        "num_samples": settings["sample"]["num_samples"],
        "sample_steps": settings["sample"]["steps"],
        "experiment": params.section("tracking").experiment,
    }


def _check_resumable(arm: str, params: Params, digests: dict[str, str]) -> None:
    """A finished image of this arm made under other settings, or from another file of the same
    name (``digests``: :func:`~.arms.source_digests`): refuse before running anything."""
    results = Path(params.section("data").results_dir)
    same = {fingerprint(params), legacy_fingerprint(params)}
    for name, digest in digests.items():
        path = row_path(ImagePaths(name, results))
        if not path.is_file():
            continue
        row = json.loads(path.read_text())
        if row.get("fingerprint") not in same:
            what = f"with other settings for arm {arm!r} than this command's"
        elif not same_source(row.get("source_sha256"), digest):
            src = find_source_image(params.section("data").images_dir, name)
            what = f"from another image than {src} (sha256 {str(row['source_sha256'])[:12]}..., now {digest[:12]}...)"
        else:
            continue
        raise ConfigError(f"{path}: made {what}; use another --out, or delete {results} to rerun it")


def prepare_arms(
    arms: Sequence[Arm], common: Sequence[str], images_dir: Path, out: Path, digests: dict[str, str]
) -> dict[str, Params]:
    """Validate every arm (params, overrides, resumability, equal evaluate sections) before any work;
    ``digests``: the selected images' :func:`~.arms.source_digests`."""
    check_arms(arms)
    params = {a.name: arm_params(a, common, images_dir, out) for a in arms}
    first = arms[0].name
    for a in arms:
        if params[a.name].section_dict("evaluate") != params[first].section_dict("evaluate"):
            raise ConfigError(
                f"--arm {a.name}: its evaluate section differs from arm {first!r}'s; the metrics "
                "would not be comparable (set evaluate.* the same, e.g. with --set)"
            )
        _check_resumable(a.name, params[a.name], digests)
    return params


def summary_experiment(params: Params, arm: str) -> str:
    """The experiment of the benchmark's own run: the arms' ``<x>-benchmark-<arm>`` without the arm
    (or the ``tracking.experiment`` a user set)."""
    name = params.section("tracking").experiment
    suffix = f"-{arm}"
    return name[: -len(suffix)] if name.endswith(f"-benchmark{suffix}") else name


def _log(msg: str) -> None:
    print(f"[benchmark] {msg}", file=sys.stderr, flush=True)


def make_sheets(
    out: Path,
    names: Sequence[str],
    arm_params_: dict[str, Params],
    methods: Sequence[tuple[str, Path]],
    processed: dict[str, Path],
    done: set[tuple[str, str]],
) -> dict[str, str]:
    """One contact sheet per image that has a processed training image: ``{image: relative path}``."""

    sheets: dict[str, str] = {}
    for name in names:
        if name not in processed:
            continue
        arms = [
            (arm, sample_files(ImagePaths(name, Path(p.section("data").results_dir)).samples))
            for arm, p in arm_params_.items()
            if (arm, name) in done
        ]
        bases = [(m, f) for m, folder in methods if (f := find_baseline(folder, name)) is not None]
        rel = f"sheets/{name}.png"
        image_sheet(name, processed[name], arms, bases, out / rel)
        sheets[name] = rel
    return sheets


def run_benchmark(
    images_dir: str | Path,
    *,
    out: str | Path = "results-benchmark",
    params_path: str | Path = "params.yaml",
    overrides: Sequence[str] = (),
    arms: Sequence[Arm] = (),
    images: str | None = None,
    limit: int | None = None,
    baselines: str | Path | None = None,
    weights_dir: str | Path | None = None,
    sizes: Sequence[tuple[float, float]] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Run every arm over the selected images of ``images_dir``; write sheets, tables and plot into ``out``.

    ``overrides`` (``--set``) apply to every arm, before each arm's own. ``sizes`` (``--sizes``,
    ``(scale_h, scale_w)`` pairs): every arm at every size (:func:`.arms.with_sizes`). Images already finished
    in ``out`` (same arm settings) are reused, so a killed run continues where it stopped.
    Returns the result dict written to ``benchmark.json`` (``rows``, ``means``, ``settings``,
    ``files``, ...). Raises if no image could be evaluated by any arm.
    """

    images_dir, out = Path(images_dir), Path(out)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: images folder not found")
    methods = baseline_methods(baselines) if baselines is not None else []
    names = select_images(images_dir, images, limit)
    arms = list(arms) or [Arm(OURS, Path(params_path))]
    if sizes:
        arms = with_sizes(arms, sizes)
    digests = source_digests(images_dir, names)
    params = prepare_arms(arms, overrides, images_dir, out, digests)
    first = params[arms[0].name]
    columns = metric_columns(first)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(first.section("evaluate").device)
    models, unavailable = evaluate.load_models(first, weights_dir, device)
    rows: list[dict] = []
    failures: dict[str, str] = {}
    trained: dict[tuple[str, str], tuple[str, ImagePaths]] = {}  # (model settings, image) -> first arm's
    # per arm, once: its results' fingerprint, the old spelling of it, and the one of its trained model
    keys = {n: (fingerprint(p), legacy_fingerprint(p), fingerprint(p, TRAIN_SECTIONS)) for n, p in params.items()}
    t0 = time.time()
    for i, name in enumerate(names, 1):
        for arm in arms:
            p = params[arm.name]
            paths = ImagePaths(name, Path(p.section("data").results_dir))
            fp, legacy, model_fp = keys[arm.name]
            model_key = (model_fp, name)
            _log(f"{i}/{len(names)} {arm.name}/{name}")
            try:
                if row_path(paths).is_file():
                    # same settings (checked by fingerprint before any work), maybe another name: this arm's
                    row = {**json.loads(row_path(paths).read_text()), "method": arm.name}
                    _log(f"{arm.name}/{name}: done before, reused ({row_path(paths)})")
                else:
                    row = run_image(
                        p,
                        arm.name,
                        name,
                        fp,
                        digests[name],
                        also_accept=(legacy,),
                        train_source=trained.get(model_key),
                        weights_dir=weights_dir,
                        models=models,
                        unavailable=unavailable,
                        progress=progress,
                        log=_log,
                    )
            except (KeyboardInterrupt, ConfigError, Preempted):  # a stop signal stops the whole benchmark
                raise
            except Exception as err:  # one bad image must not sink a 50-image benchmark
                failures[f"{arm.name}/{name}"] = f"{type(err).__name__}: {err}"
                _log(f"{arm.name}/{name} FAILED: {failures[f'{arm.name}/{name}']}")
                traceback.print_exc(file=sys.stderr)
                continue
            rows.append(row)
            trained.setdefault(model_key, (arm.name, paths))
            unavailable.update(row.get("unavailable") or {})
    if not rows:
        raise RuntimeError(f"benchmark: no image could be evaluated: {failures}")
    done = {(r["method"], r["image"]) for r in rows}
    first_arm = arms[0].name
    processed = {}
    for name in names:  # baselines are scored at (and sheets scaled to) one training image: the first arm's
        for arm in arms:
            f = ImagePaths(name, Path(params[arm.name].section("data").results_dir)).processed
            if (arm.name, name) in done and f.is_file():
                processed[name] = f
                break
    notes: list[str] = []
    if any(n in processed and processed[n] != ImagePaths(n, out / first_arm).processed for n in processed):
        notes.append(
            f"arm {first_arm!r} failed on some images: their baselines are scored at another arm's processed image"
        )
    max_sizes = {a.name: params[a.name].section("preprocess").max_size for a in arms}
    if len(set(max_sizes.values())) > 1:
        notes.append(f"arms train at different sizes {max_sizes}: the baselines are scored at the first arm's")
    base_rows, base_notes = score_baselines(first, names, methods, processed)
    rows += base_rows
    notes += base_notes
    sheets = make_sheets(out, names, params, methods, processed, done)
    settings = {
        "images_dir": str(images_dir),
        "out": str(out),
        "device": str(device),
        "limit": limit,
        "selection": images,
        "baselines": str(baselines) if baselines else None,
        "baselines_methods": [m for m, _ in methods],
        "brightness_tolerance": BRIGHTNESS_TOLERANCE,
        "arms": {a.name: _arm_info(a, params[a.name]) for a in arms},
        "seconds": round(time.time() - t0, 1),
        "tracking": {
            **params[first_arm].section_dict("tracking"),
            "experiment": summary_experiment(params[first_arm], first_arm),
        },
    }
    # the pixel-diversity reason of single-sample baselines is explained in the text, not listed
    result: dict[str, Any] = {
        "rows": rows,
        "columns": columns,
        "settings": settings,
        "failures": failures,
        "unavailable": {k: v for k, v in unavailable.items() if k != "pixel_diversity"},
        "notes": notes,
        "sheets": sheets,
        "published": report.published_rows(columns[0]),
    }
    report.write_report(result, out)
    log_to_mlflow(result, out)
    print(report.render_markdown(result))
    return result


def log_to_mlflow(result: dict[str, Any], out: Path) -> None:
    """One ``benchmark`` run in ``<experiment>-benchmark``: settings, mean metrics per method, files, sheets."""

    settings = result["settings"]
    tracking = settings["tracking"]
    with stage_run(
        "benchmark",
        "_benchmark",
        enabled=tracking["enabled"],
        experiment=tracking["experiment"],
        uri=tracking["tracking_uri"],
        local_note=f"The tables are still in {out}.",
    ) as tracker:
        tracker.log_params(
            {
                "images_dir": settings["images_dir"],
                "num_images": len(result["images"]),
                "images": ",".join(result["images"])[:500],
                "arms": {n: a["spec"] for n, a in settings["arms"].items()},
                "baselines": settings["baselines"],
            }
        )
        logged = {}
        for m in result["means"]:
            prefix = re.sub(r"\W+", "_", m["method"].lower())
            logged.update({f"{prefix}.mean_{c}": m[c] for c in result["columns"] if m.get(c) is not None})
        tracker.log_metrics(logged)
        for f in result["files"].values():
            tracker.log_artifact(f)
        if (out / "sheets").is_dir():
            tracker.log_artifact(out / "sheets", "sheets")
