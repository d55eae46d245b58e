"""``sindiffusion time-curve``: sample quality vs minutes of training, for choosing a budget.

Each image is trained ONCE with ``train.snapshot_minutes`` set to the requested marks (and, unless
the params set it, ``train.max_minutes`` = the last mark), so the checkpoint at minute m is the EMA
model after m minutes of wall-clock training of one run (its LR schedule and ``ema_decay: auto``
plan for ``train.steps``). Every snapshot then draws the ``sample`` section's samples exactly as
``sindiffusion sample`` does, its ``sample.init: layout`` start included (``--num`` overrides the
count), and is scored with the weight-free metrics of ``evaluate`` (patch SWD, copy NN distance and
fraction, pixel diversity) plus the brightness check. When training reaches
``train.steps`` before the last mark, the final model is one more point at its actual time and
the missing marks are listed in the notes.

A rerun into the same ``out`` resumes instead of starting over (so a long curve can be split over
sittings, or survive preemption): an image whose points were scored under the same settings
(:func:`~.arms.fingerprint` of preprocess ... evaluate, the marks included) is reused as it is; one
that was trained under the same training settings from the same image file (its sha256) but not
(or differently) scored is sampled again without retraining; anything else is trained from the
start (or from its resume checkpoint).

Files in ``out``::

    runs/<image>/...       the pipeline artifacts of each image (snapshots in train/snapshots/)
    done/<image>.json      what is finished for the image: its fingerprints and source sha256, then its points
    time_curve.csv         one row per (image, snapshot): minutes, steps, seconds, metrics
    time_curve.json        the rows, the per-mark means, notes and settings
    time_curve.png         one panel per metric: metric vs minutes, one line per image (+ mean)
    sheets/<image>.png     the training image and up to 4 samples of every snapshot
    samples/<image>/<mark>/sample_000.png ...  those samples as files (``<mark>``: ``10min``, ``final``),
                           listed in each row's ``samples``, so ``time-curve-compare`` can lay
                           several curves side by side (:mod:`.curve_compare`)

and one MLflow run (experiment ``<tracking.experiment>-time-curve``) with the per-image metrics
logged at step = training seconds, the means per mark, and the files above.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..artifacts import atomic_write, write_json
from ..benchmark.arms import TRAIN_SECTIONS, fingerprint, same_source, select_images, source_digests
from ..benchmark.per_image import brightness_stats
from ..benchmark.report import WEIGHT_FREE
from ..benchmark.sheets import contact_sheet
from ..config import Params, load_params
from ..data.io import save_image, tensor_to_image
from ..paths import ImagePaths, snapshot_name
from ..runtime import resolve_device
from ..stages import preprocess, train
from ..stages.evaluate import compute, load_unit
from ..stages.sample import draw, prepare
from ..tracking import stage_run

COLUMNS = (
    "image",
    "label",
    "minutes",
    "steps",
    "train_seconds",
    "sample_seconds",
    *WEIGHT_FREE,
    "bright_max_dev",
    "bright_over",
    "checkpoint",
)
FILES = {"csv": "time_curve.csv", "json": "time_curve.json", "plot": "time_curve.png"}
DONE = "done"
SHEET_SAMPLES = 4


def parse_minutes(text: str) -> list[float]:
    """``"1,2,5"`` -> ``[1.0, 2.0, 5.0]``: positive, distinct, sorted (ValueError naming ``--minutes``)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"--minutes {text!r}: expected comma-separated numbers, e.g. 1,2,5,10,20") from err
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise ValueError(f"--minutes {text!r}: expected positive numbers, e.g. 1,2,5,10,20")
    if len(set(values)) != len(values):
        raise ValueError(f"--minutes {text!r}: repeated values")
    return sorted(values)


def curve_params(
    params_path: str | Path,
    overrides: Sequence[str],
    images_dir: Path,
    out: Path,
    minutes: Sequence[float],
    num: int | None,
) -> Params:
    """The params with the snapshot marks, the time budget, ``data`` pointed at the folders and
    tracking at ``<experiment>-time-curve``; every section the run reads is validated here."""
    extra = [f"train.snapshot_minutes=[{','.join(f'{m:g}' for m in minutes)}]"]
    if not any(o.strip().startswith("train.max_minutes=") for o in overrides):
        extra.append(f"train.max_minutes={max(minutes):g}")
    if num is not None:
        extra.append(f"sample.num_samples={num}")
    params = load_params(params_path, [*overrides, *extra])
    if params.raw.get("train", {}).get("max_minutes") is None:
        params.raw["train"]["max_minutes"] = max(minutes)  # `max_minutes: null` in the file
    params.raw["data"] = {
        **(params.raw.get("data") or {}),
        "images_dir": str(images_dir),
        "results_dir": str(out / "runs"),
        "images": [],
    }
    tracking = dict(params.raw.get("tracking") or {})
    if not any(o.strip().startswith("tracking.experiment=") for o in overrides):
        tracking["experiment"] = f"{tracking.get('experiment', 'sindiffusion')}-time-curve"
    params.raw["tracking"] = tracking
    for section in ("data", "preprocess", "model", "diffusion", "train", "sample", "evaluate", "tracking"):
        params.section(section)
    return params


def _points(
    paths: ImagePaths, minutes: Sequence[float], train_metrics: dict[str, Any]
) -> tuple[list[tuple[str, Path]], list[str]]:
    """``[(label, checkpoint)]`` of one image: the snapshots that exist, plus the final model when
    training ended by its step count; and notes on the marks it never reached."""
    points, missing = [], []
    for m in minutes:
        path = paths.snapshots / snapshot_name(m)
        (points.append((f"{m:g} min", path)) if path.is_file() else missing.append(f"{m:g}"))
    notes = []
    if not train_metrics.get("stopped_by_time", True):
        points.append(("final", paths.checkpoint))
        if missing:
            notes.append(
                f"{paths.image}: training reached train.steps={train_metrics.get('steps')} after "
                f"{train_metrics.get('train_seconds_total', 0) / 60:.2f} min, before the marks "
                f"{', '.join(missing)} min (raise train.steps to reach them); the final model is a point"
            )
    elif missing:
        notes.append(f"{paths.image}: no snapshot at {', '.join(missing)} min")
    return points, notes


def _earlier_training(paths: ImagePaths) -> dict[str, Any]:
    """The training metrics of an earlier run's image (``--rescore``, a resumed run); FileNotFoundError naming what
    is missing when that image was not trained to the end there."""
    for need in (paths.processed, paths.train_metrics):
        if not need.is_file():
            raise FileNotFoundError(
                f"{need}: --rescore needs an earlier time-curve run of image {paths.image!r} in this --out; "
                "run without --rescore first"
            )
    return json.loads(paths.train_metrics.read_text())


def _record_path(out: Path, image: str) -> Path:
    return out / DONE / f"{image}.json"


def _read_record(out: Path, image: str) -> dict[str, Any]:
    """The image's record of an earlier run into ``out``; ``{}`` when there is none or it is unreadable
    (then the image is simply done again)."""
    path = _record_path(out, image)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _reusable(record: dict[str, Any], keys: dict[str, str], out: Path, paths: ImagePaths) -> str:
    """What an earlier run left that this one may keep: ``"scored"`` (its points, same settings),
    ``"trained"`` (its models, same training settings, same image file: ``keys["source"]``) or ``""``."""
    trained = record.get("train_fingerprint") == keys["train"] and paths.train_metrics.is_file()
    trained = trained and same_source(record.get("source_sha256"), keys["source"])
    trained = trained and paths.processed.is_file()
    if trained and record.get("fingerprint") == keys["result"] and isinstance(record.get("rows"), list):
        if (out / str(record.get("sheet", ""))).is_file():
            return "scored"
    return "trained" if trained else ""


def score_point(
    params: Params, bundle_path: Path, processed: Path, real: Any, device: Any, progress: bool
) -> tuple[dict[str, Any], Any]:
    """Sample one checkpoint exactly as ``sindiffusion sample`` would (the ``sample`` section, its
    start from the processed training image ``processed`` included) and score it against ``real``
    (``[1, 3, H, W]`` in [0, 1]) -> ``(row fields, samples [N, 3, H', W'] in [0, 1])``."""

    cfg = params.section("sample")
    prepared = prepare(cfg, bundle_path, processed, device)
    bundle = prepared.bundle
    samples, timings = draw(cfg, prepared, f"sample {bundle_path.name}", progress)
    fakes = ((samples + 1) / 2).clamp(0, 1)
    metrics = compute(params, real, fakes, deep=False)
    snap = bundle.checkpoint.get("snapshot") or {}
    seconds = float(snap.get("seconds", bundle.checkpoint.get("train_seconds", float("nan"))))
    row = {
        "minutes": float(snap["minutes"]) if "minutes" in snap else seconds / 60.0,
        "steps": int(bundle.checkpoint["step"]),
        "train_seconds": seconds,
        "sample_seconds": timings["sample_seconds"],
        **{k: metrics.get(k) for k in WEIGHT_FREE},
        **brightness_stats(real, fakes),
        "checkpoint": str(bundle_path),
    }
    return row, fakes


def mean_rows(rows: list[dict]) -> list[dict]:
    """The mean of each metric over the images, per snapshot label (labels in first-seen order)."""
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        row: dict[str, Any] = {"image": f"mean of {len(mine)}", "label": label}
        for col in ("minutes", "steps", "train_seconds", "sample_seconds", *WEIGHT_FREE, "bright_max_dev"):
            vals = [float(r[col]) for r in mine if isinstance(r.get(col), (int, float)) and r.get(col) == r.get(col)]
            row[col] = sum(vals) / len(vals) if vals else None
        out.append(row)
    return out


def render_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return buf.getvalue()


def plot(rows: list[dict], means: list[dict], path: Path, title: str) -> Path:
    """One panel per weight-free metric: value vs training minutes, a line per image, the mean dashed."""
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib

    matplotlib.use("Agg")
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(WEIGHT_FREE), figsize=(4.2 * len(WEIGHT_FREE), 3.8))
    better = {
        "patch_swd": "lower is better",
        "copy_fraction": "lower is better",
        "copy_nn_dist": "higher is better",
        "pixel_diversity": "higher is better",
        "sharpness": "1 is best",
        "stretch": "1 is best",
        "coverage": "higher covers more; read with copying",
    }
    for ax, metric in zip(axes, WEIGHT_FREE):
        for image in dict.fromkeys(r["image"] for r in rows):
            pts = sorted((r["minutes"], r[metric]) for r in rows if r["image"] == image and r.get(metric) is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=image)
        pts = sorted((m["minutes"], m[metric]) for m in means if m.get(metric) is not None and m.get("minutes"))
        if pts:
            ax.plot(*zip(*pts), "k--", marker="*", label="mean")
        ax.set_xscale("log")
        ax.set_xlabel("minutes of training (log)")
        ax.set_title(f"{metric} ({better.get(metric, 'see docs/benchmark.md')})", fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def sample_folder(image: str, label: str) -> str:
    """``samples/<image>/<mark>`` (relative to ``out``) of one point: ``"10 min"`` -> ``samples/3/10min``."""
    return f"samples/{image}/" + re.sub(r"\s+", "", label)


def _log(msg: str) -> None:
    print(f"[time-curve] {msg}", file=sys.stderr, flush=True)


def run_time_curve(
    images_dir: str | Path,
    *,
    images: str,
    minutes: Sequence[float],
    out: str | Path,
    params_path: str | Path = "params.yaml",
    overrides: Sequence[str] = (),
    num: int | None = None,
    progress: bool = True,
    rescore: bool = False,
) -> dict[str, Any]:
    """Train each selected image once with snapshots at ``minutes``, sample and score every snapshot,
    write the CSV/JSON/PNG/sheets into ``out`` and log them to MLflow. Returns the result dict.

    ``rescore``: train nothing; score the snapshots and final models that an earlier run left in
    ``out/runs`` (the ``sample`` section may differ from that run's). An image without a finished
    training there is a FileNotFoundError naming it, raised before anything is sampled or written."""

    images_dir, out = Path(images_dir), Path(out)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: images folder not found")
    names = select_images(images_dir, images)
    params = curve_params(params_path, overrides, images_dir, out, minutes, num)
    device = resolve_device(params.section("sample").device)
    results = Path(params.section("data").results_dir)
    rows: list[dict] = []
    notes: list[str] = []
    sheets: dict[str, str] = {}
    keys = {"result": fingerprint(params), "train": fingerprint(params, TRAIN_SECTIONS)}
    digests = source_digests(images_dir, names)
    if rescore:
        trained = {name: _earlier_training(ImagePaths(name, results)) for name in names}
    for i, name in enumerate(names, 1):
        paths = ImagePaths(name, results)
        record = {} if rescore else _read_record(out, name)
        reuse = _reusable(record, {**keys, "source": digests[name]}, out, paths)
        trained_from = {"train_fingerprint": keys["train"], "source_sha256": digests[name]}
        if reuse == "scored":
            _log(f"{i}/{len(names)} {name}: done in an earlier run with the same settings, kept")
            rows += record["rows"]
            notes += record.get("notes", [])
            sheets[name] = record["sheet"]
            continue
        if rescore or reuse == "trained":
            _log(f"{i}/{len(names)} {name}: scoring the snapshots in {paths.snapshots} (trained earlier)")
            train_metrics = trained[name] if rescore else _earlier_training(paths)
        else:
            _log(f"{i}/{len(names)} {name}: training with snapshots at {', '.join(f'{m:g}' for m in minutes)} min")
            # the record must never describe models that are being replaced
            _record_path(out, name).unlink(missing_ok=True)
            preprocess.run(params, name)
            train_metrics = train.run(params, name, progress=progress)
            write_json(_record_path(out, name), trained_from)
        scored = _score_image(params, paths, minutes, train_metrics, out, device, progress)
        image_rows, image_notes, sheets[name] = scored
        rows += image_rows
        notes += image_notes
        if not rescore:  # a rescore may score models trained under other settings: it records nothing
            record = {**trained_from, "fingerprint": keys["result"], "rows": image_rows}
            write_json(_record_path(out, name), {**record, "notes": image_notes, "sheet": sheets[name]})
    means = mean_rows(rows)
    settings = {
        "images_dir": str(images_dir),
        "images": names,
        "minutes": list(minutes),
        "out": str(out),
        "params": str(params_path),
        "overrides": list(overrides),
        "rescore": rescore,
        "device": str(device),
        "train": params.section_dict("train"),
        "sample": params.section_dict("sample"),
        "max_size": params.section("preprocess").max_size,
    }
    result = {
        "rows": rows,
        "means": means,
        "notes": notes,
        "sheets": sheets,
        "settings": settings,
        "files": {k: str(out / v) for k, v in FILES.items()},
    }
    atomic_write(out / FILES["csv"], lambda tmp: tmp.write_text(render_csv(rows + means)))
    write_json(out / FILES["json"], result)
    title = f"{len(names)} images at {settings['max_size']} px, {params.path}" + (
        f" ({', '.join(overrides)})" if overrides else ""
    )
    plot(rows, means, out / FILES["plot"], title[:160])
    _log_mlflow(params, result, out)
    for n in notes:
        _log(f"note: {n}")
    return result


def _score_image(
    params: Params,
    paths: ImagePaths,
    minutes: Sequence[float],
    train_metrics: dict[str, Any],
    out: Path,
    device: Any,
    progress: bool,
) -> tuple[list[dict], list[str], str]:
    """Sample and score every point of one trained image; write its contact sheet.
    Returns ``(rows, notes, sheet path relative to out)``."""

    name = paths.image
    points, notes = _points(paths, minutes, train_metrics)
    real = load_unit(paths.processed)
    rows: list[dict] = []
    sheet_rows: list[tuple[str, list]] = [(f"training {name}", [tensor_to_image(real[0] * 2 - 1)])]
    for label, ckpt in points:
        row, fakes = score_point(params, ckpt, paths.processed, real, device, progress)
        rows.append({"image": name, "label": label, **row})
        _log(
            f"{name} @ {label} (step {row['steps']}): patch_swd {row['patch_swd']:.4f}, "
            f"copy_fraction {row['copy_fraction']:.3f}"
        )
        pictures = [tensor_to_image(f * 2 - 1) for f in fakes[:SHEET_SAMPLES]]
        folder = sample_folder(name, label)
        rows[-1]["samples"] = [
            str(save_image(p, out / folder / f"sample_{k:03d}.png").relative_to(out)) for k, p in enumerate(pictures)
        ]
        sheet_rows.append((label, pictures))
    rel = f"sheets/{name}.png"
    contact_sheet(sheet_rows, out / rel)
    return rows, notes, rel


def _log_mlflow(params: Params, result: dict[str, Any], out: Path) -> None:
    tracking = params.section("tracking")
    with stage_run(
        "time-curve",
        "_time_curve",
        enabled=tracking.enabled,
        experiment=tracking.experiment,
        uri=tracking.tracking_uri,
        local_note=f"The curve is still in {out}.",
    ) as tracker:
        s = result["settings"]
        tracker.log_params(
            {
                "images_dir": s["images_dir"],
                "images": ",".join(s["images"])[:500],
                "minutes": ",".join(f"{m:g}" for m in s["minutes"]),
                "params": s["params"],
                "overrides": " ".join(s["overrides"])[:500],
                "train": s["train"],
                "sample": s["sample"],
            }
        )
        for r in result["rows"]:
            key = re.sub(r"[^\w.-]+", "_", r["image"])
            tracker.log_metrics(
                {f"{key}.{m}": r[m] for m in WEIGHT_FREE if r.get(m) is not None}, step=int(round(r["train_seconds"]))
            )
        for m in result["means"]:
            if m.get("train_seconds") is not None:
                tracker.log_metrics(
                    {f"mean.{c}": m[c] for c in WEIGHT_FREE if m.get(c) is not None},
                    step=int(round(m["train_seconds"])),
                )
        for f in result["files"].values():
            tracker.log_artifact(f)
        if (out / "sheets").is_dir():
            tracker.log_artifact(out / "sheets", "sheets")
