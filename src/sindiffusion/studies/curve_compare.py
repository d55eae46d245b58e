"""``time-curve-compare``: several ``time-curve`` runs side by side, on the images and marks they share.

A recipe change at a time budget is measured as a curve of its own (``time-curve --out curve-A``
with the change, ``--out curve-ref`` without it). Comparing them means the rows of every run
restricted to the images every run has and to the marks (``10 min``) every run reached, the means
per run and mark over those same images, and pictures: one sheet per image with the training image,
4 samples of every run at every compared mark and, with ``--baselines``, the published samples of
other methods (resized to the training image, scored with the same weight-free metrics).

A pick is ``[LABEL=]RUN``: ``RUN`` a finished time-curve's ``--out`` folder, ``LABEL`` its name in
the comparison (default: the folder's name). Files in ``out``::

    time_curve_compare.md    mean per run and mark (+ baselines), per-image patch SWD / copy fraction
    time_curve_compare.csv   one row per (run, image, mark) and the means; baselines with minutes empty
    time_curve_compare.json  the rows, means, baseline rows, notes and settings
    time_curve_compare.png   one panel per weight-free metric: the mean of every run vs minutes
    sheets/<image>.png       training image, samples of every run at every mark, the baselines

and one MLflow run in ``<tracking.experiment>-time-curve`` (``--params``' tracking section).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import atomic_write, write_json
from ..benchmark.arms import natural_key
from ..benchmark.places import baseline_methods, find_baseline, score_baselines
from ..benchmark.report import WEIGHT_FREE, md_table
from ..benchmark.report import mean_rows as method_means
from ..benchmark.sheets import image_sheet
from ..config import Params
from ..paths import ImagePaths
from ..tracking import stage_run
from .time_curve import FILES as CURVE_FILES
from .time_curve import mean_rows

FILES = {
    "markdown": "time_curve_compare.md",
    "csv": "time_curve_compare.csv",
    "json": "time_curve_compare.json",
    "plot": "time_curve_compare.png",
}
_LABEL = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class CurvePick:
    """The time-curve run in ``folder``, named ``label`` in the comparison."""

    folder: Path
    label: str


def parse_curve_pick(spec: str) -> CurvePick:
    """``[LABEL=]RUN`` -> :class:`CurvePick` (label: the folder's name by default); ValueError naming
    the spec when the label is not letters, digits, ``_``, ``-``, ``.``."""
    label, eq, folder = spec.partition("=")
    if not eq or "/" in label:  # a '=' inside the run's path is not a label
        label, folder = "", spec
    folder = folder.strip()
    if not folder:
        raise ValueError(f"{spec!r}: expected [LABEL=]RUN, e.g. 3lv=curve-3lv")
    label = label.strip() or Path(folder).resolve().name
    if not _LABEL.fullmatch(label):
        raise ValueError(f"{spec!r}: the label {label!r} must be letters, digits, '_', '-' or '.' (give LABEL=RUN)")
    return CurvePick(Path(folder), label)


def load_curve(folder: Path) -> dict[str, Any]:
    """A finished time-curve's ``time_curve.json``; ValueError naming the folder when it is none."""
    path = folder / CURVE_FILES["json"]
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        finished = "not the --out of a finished `sindiffusion time-curve`"
        raise ValueError(f"{folder}: no {CURVE_FILES['json']} ({finished})") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable ({err})") from err
    if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
        raise ValueError(f"{path}: not a time-curve result (no 'rows')")
    return result


def _marks(picks: Sequence[CurvePick], curves: dict[Path, dict], minutes: Sequence[float] | None) -> list[str]:
    """The point labels every run has (first run's order), or the requested ``minutes`` among them."""
    have = {p.label: list(dict.fromkeys(r["label"] for r in curves[p.folder]["rows"])) for p in picks}
    shared = [m for m in have[picks[0].label] if all(m in h for h in have.values())]
    if minutes is None:
        if not shared:
            listing = "; ".join(f"{label}: {', '.join(h) or 'none'}" for label, h in have.items())
            raise ValueError(f"time-curve-compare: no mark is in every run ({listing})")
        return shared
    wanted = [f"{m:g} min" for m in minutes]
    for m in wanted:
        for label, h in have.items():
            if m not in h:
                raise ValueError(
                    f"--minutes: {label} has no point at {m} (its points: {', '.join(h) or 'none'}); "
                    f"marks in every run: {', '.join(shared) or 'none'}"
                )
    return wanted


def compare_curves(
    picks: Sequence[CurvePick],
    out: str | Path,
    params: Params,
    minutes: Sequence[float] | None = None,
    baselines: str | Path | None = None,
) -> dict[str, Any]:
    """Compare the picked time-curve runs on the images and marks all of them have; write the
    files of the module docstring into ``out`` and return the result.

    ``params``: its ``evaluate`` section scores the baselines. ValueError (naming the run or pick)
    when a run is missing or not a time-curve, two picks share a label, ``out`` is one of the runs,
    the runs were made at different ``preprocess.max_size``, or no image or mark is shared; nothing
    is written then.
    """

    out = Path(out)
    if len(picks) < 2:
        raise ValueError("time-curve-compare: give at least two time-curve runs, as [LABEL=]RUN")
    labels = [p.label for p in picks]
    if dup := sorted({x for x in labels if labels.count(x) > 1}):
        raise ValueError(f"time-curve-compare: two runs named {dup[0]!r}; name them with LABEL=RUN")
    curves = {p.folder: load_curve(p.folder) for p in picks}
    if any(out.resolve() == p.folder.resolve() for p in picks):
        raise ValueError(f"--out {out}: is one of the compared runs; write the comparison elsewhere")
    sizes = {p.label: curves[p.folder].get("settings", {}).get("max_size") for p in picks}
    if len(set(map(str, sizes.values()))) > 1:
        raise ValueError(
            "time-curve-compare: the runs were made at different preprocess.max_size ("
            + ", ".join(f"{k}: {v}" for k, v in sizes.items())
            + "); only curves at one size compare"
        )
    per_run = [{r["image"] for r in curves[p.folder]["rows"]} for p in picks]
    images = sorted(set.intersection(*per_run), key=natural_key)
    if not images:
        raise ValueError(
            "time-curve-compare: no image is in every run ("
            + "; ".join(f"{p.label}: {', '.join(sorted(s, key=natural_key)) or 'none'}" for p, s in zip(picks, per_run))
            + ")"
        )
    marks = _marks(picks, curves, minutes)
    rows = [
        {"run": p.label, **r, "folder": str(p.folder)}
        for p in picks
        for image in images
        for mark in marks
        for r in curves[p.folder]["rows"]
        if r["image"] == image and r["label"] == mark
    ]
    means = [{"run": p.label, **m} for p in picks for m in mean_rows([r for r in rows if r["run"] == p.label])]
    # the first run's processed training images: every run at one max_size made the same ones
    processed = {i: ImagePaths(i, picks[0].folder / "runs").processed for i in images}
    notes = [f"compared on the {len(images)} images and the marks ({', '.join(marks)}) every run has"]
    left_out = sorted(set.union(*per_run) - set(images), key=natural_key)
    notes += [f"left out (not in every run): {', '.join(left_out)}"] if left_out else []
    methods = baseline_methods(baselines) if baselines is not None else []
    base_rows, base_notes = score_baselines(
        params, images, methods, {i: p for i, p in processed.items() if p.is_file()}
    )
    notes += base_notes
    base_means = [
        {**m, "run": m["method"], "label": "published"}
        for m in method_means(base_rows, [*WEIGHT_FREE, "bright_max_dev"])
    ]
    settings = {
        "compared": {p.label: str(p.folder) for p in picks},
        "images": images,
        "marks": marks,
        "max_size": next(iter(sizes.values())),
        "baselines": str(baselines) if baselines is not None else None,
        "baselines_methods": [m for m, _ in methods],
        "runs": {p.label: curves[p.folder].get("settings", {}) for p in picks},
        "out": str(out),
    }
    result: dict[str, Any] = {
        "rows": rows,
        "means": means,
        "baseline_rows": base_rows,
        "baseline_means": base_means,
        "notes": notes,
        "settings": settings,
        "files": {k: str(out / v) for k, v in FILES.items()},
    }
    result["sheets"] = _sheets(result, processed, methods, out)
    _write(result, out)
    return result


def _sheets(
    result: dict[str, Any], processed: dict[str, Path], methods: Sequence[tuple[str, Path]], out: Path
) -> dict[str, str]:
    """One sheet per image: training image, every run's stored samples at every mark, the baselines.
    An image whose files are missing (a run from before samples were stored: ``time-curve
    --rescore`` stores them) gets a note instead of a sheet."""

    sheets: dict[str, str] = {}
    for image in result["settings"]["images"]:
        training = processed[image]
        runs: list[tuple[str, list[Path]]] = []
        missing = [] if training.is_file() else [str(training)]
        for r in (r for r in result["rows"] if r["image"] == image):
            files = [Path(r["folder"]) / f for f in r.get("samples") or []]
            if not files or not all(f.is_file() for f in files):
                missing.append(f"{r['run']} @ {r['label']} (no stored samples: rerun it with --rescore)")
            runs.append((f"{r['run']} {r['label']}", files))
        if missing:
            result["notes"].append(f"sheet {image}: not drawn, files missing: {'; '.join(missing)}")
            continue
        bases = [(m, f) for m, folder in methods if (f := find_baseline(folder, image)) is not None]
        rel = f"sheets/{image}.png"
        image_sheet(image, training, runs, bases, out / rel)
        sheets[image] = rel
    return sheets


CSV_COLUMNS = ("run", "image", "label", "minutes", "steps", *WEIGHT_FREE, "bright_max_dev", "train_seconds")


def render_csv(result: dict[str, Any]) -> str:
    """Rows, then means, then the baselines' rows and means (``label`` = ``published``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    base = [{**r, "run": r["method"], "label": "published"} for r in result["baseline_rows"]]
    for r in [*result["rows"], *result["means"], *base, *result["baseline_means"]]:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})
    return buf.getvalue()


def render_markdown(result: dict[str, Any]) -> str:
    """The tables a recipe note needs: means per run and mark, then patch SWD / copy fraction per image."""
    s = result["settings"]
    cols = [*WEIGHT_FREE, "bright_max_dev"]
    means = [
        {**m, "images": m["image"], "steps": None if m.get("steps") is None else round(m["steps"])}
        for m in [*result["means"], *result["baseline_means"]]
    ]
    columns = [(r["run"], r["label"]) for r in result["means"]]
    per_image = []
    for image in s["images"]:
        row: dict[str, Any] = {"image": image}
        for run, label in columns:
            hit = next((r for r in result["rows"] if (r["run"], r["label"], r["image"]) == (run, label, image)), None)
            row[f"{run} {label}"] = _pair(hit)
        for method in s["baselines_methods"]:
            hit = next((r for r in result["baseline_rows"] if (r["method"], r["image"]) == (method, image)), None)
            row[method] = _pair(hit)
        per_image.append(row)
    heads = [f"{run} {label}" for run, label in columns] + list(s["baselines_methods"])
    parts = [
        "# Time curves side by side",
        "",
        f"Runs: {', '.join(f'`{k}` = `{v}`' for k, v in s['compared'].items())}; images: {', '.join(s['images'])} "
        f"at {s['max_size']} px.",
        "",
        "Lower is better: patch_swd, copy_fraction, bright_max_dev (largest |mean brightness - training "
        "image's| over the samples, 0-1, max over images); higher is better: copy_nn_dist, pixel_diversity.",
        "",
        "## Mean over images",
        "",
        md_table(means, ["run", "label", "images", "steps", *cols], ["run", "mark", "images", "steps", *cols]),
        "",
        "## Per image: patch SWD / copy fraction",
        "",
        md_table(per_image, ["image", *heads]),
        "",
    ]
    if result.get("sheets"):
        parts += ["## Contact sheets", ""] + [f"- [{i}]({p})" for i, p in result["sheets"].items()] + [""]
    parts += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(parts)


def _pair(row: dict | None) -> str:
    if row is None or row.get("patch_swd") is None:
        return "n/a"
    return f"{row['patch_swd']:.4f} / {row['copy_fraction']:.2f}"


def plot(result: dict[str, Any], path: Path) -> Path:
    """One panel per weight-free metric: every run's mean vs minutes, the baselines' means as lines."""
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib

    matplotlib.use("Agg")
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(WEIGHT_FREE), figsize=(4.2 * len(WEIGHT_FREE), 3.8))
    for ax, metric in zip(axes, WEIGHT_FREE):
        for run in result["settings"]["compared"]:
            pts = sorted(
                (m["minutes"], m[metric])
                for m in result["means"]
                if m["run"] == run and m.get(metric) is not None and m.get("minutes")
            )
            if pts:
                ax.plot(*zip(*pts), marker="o", label=run)
        for b in result["baseline_means"]:
            if b.get(metric) is not None:
                ax.axhline(b[metric], linestyle="--", color="gray", linewidth=1)
                ax.annotate(b["method"], (0.02, b[metric]), xycoords=("axes fraction", "data"), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("minutes of training (log)")
        ax.set_title(metric, fontsize=10)
    axes[0].legend(fontsize=8)
    s = result["settings"]
    fig.suptitle(f"mean of {len(s['images'])} images at {s['max_size']} px", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def _write(result: dict[str, Any], out: Path) -> None:
    files = {k: out / v for k, v in FILES.items()}
    atomic_write(files["csv"], lambda tmp: tmp.write_text(render_csv(result)))
    atomic_write(files["markdown"], lambda tmp: tmp.write_text(render_markdown(result)))
    write_json(files["json"], result)
    plot(result, files["plot"])


def log_mlflow(params: Params, result: dict[str, Any], out: Path) -> None:
    """One run in ``<tracking.experiment>-time-curve`` (like the curves it compares): the runs and
    marks as params, every mean as ``<run>.<mark>.mean_<metric>``, the files and sheets."""

    tracking = params.section("tracking")
    s = result["settings"]
    with stage_run(
        "time-curve-compare",
        "_time_curve_compare",
        enabled=tracking.enabled,
        experiment=f"{tracking.experiment}-time-curve",
        uri=tracking.tracking_uri,
        local_note=f"The comparison is still in {out}.",
    ) as tracker:
        tracker.log_params(
            {
                "compared": s["compared"],
                "images": ",".join(s["images"])[:500],
                "marks": ",".join(s["marks"]),
                "baselines": s["baselines"],
            }
        )
        logged = {}
        for m in [*result["means"], *result["baseline_means"]]:
            prefix = re.sub(r"[^\w.-]+", "_", f"{m['run']}.{m['label']}")
            logged.update({f"{prefix}.mean_{c}": m[c] for c in WEIGHT_FREE if m.get(c) is not None})
        tracker.log_metrics(logged)
        for f in result["files"].values():
            tracker.log_artifact(f)
        if (out / "sheets").is_dir():
            tracker.log_artifact(out / "sheets", "sheets")
