"""The benchmark's report: one table of every arm and baseline per image and on average.

:func:`write_report` turns a result (rows + settings) into ``benchmark.md``, ``benchmark.csv``,
``benchmark.png`` and ``benchmark.json`` in a folder; :func:`merge_results` joins the
``benchmark.json`` of partial runs (e.g. images 1-13 and 14-25) into one result, so
``benchmark-merge A B --out C`` writes the same tables as one run over both subsets. Rows are the
per-image results themselves; the mean rows are always recomputed from them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..artifacts import atomic_write
from ..evaluation import write_metrics_json
from ..evaluation.registry import weight_free_keys
from .arms import natural_key

#: SinDiffusion paper, Table 1 (Places50; SIFID lower is better, LPIPS diversity higher is better)
PUBLISHED: tuple[tuple[str, float, float], ...] = (
    ("SinGAN", 0.09, 0.266),
    ("ExSinGAN", 0.10, 0.248),
    ("ConSinGAN", 0.06, 0.305),
    ("GPNN", 0.07, 0.256),
    ("SinDiffusion", 0.06, 0.387),
)
PUBLISHED_SOURCE = "SinDiffusion paper, Table 1 (Places50, 50 images)"
#: columns of the weight-free metrics (always shown: every machine computes them)
WEIGHT_FREE = weight_free_keys()
#: per-image checks and timings beside the metrics (see :mod:`.per_image`)
EXTRA = ("bright_max_dev", "bright_over", "n_samples", "train_s", "first_sample_s", "per_sample_s")
#: how a mean row aggregates a column over images (default: mean)
AGGREGATE = {"bright_max_dev": "max", "bright_over": "sum", "n_samples": "sum"}
FILES = {"markdown": "benchmark.md", "csv": "benchmark.csv", "plot": "benchmark.png", "json": "benchmark.json"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def mean_rows(rows: list[dict], columns: Sequence[str]) -> list[dict]:
    """One ``kind = mean`` row per method, in first-seen order: each column's mean over the images
    that have it (``bright_max_dev``: max, ``bright_over`` / ``n_samples``: total)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        row: dict[str, Any] = {
            "kind": "mean",
            "method": method,
            "image": f"mean of {len(mine)}",
            "source": "measured here",
        }
        for c in columns:
            vals = [float(r[c]) for r in mine if _number(r.get(c))]
            how = AGGREGATE.get(c, "mean")
            if not vals:
                row[c] = None
            elif how == "sum":  # counts stay integers
                row[c] = int(sum(vals)) if all(v.is_integer() for v in vals) else sum(vals)
            else:
                row[c] = max(vals) if how == "max" else sum(vals) / len(vals)
        out.append(row)
    return out


#: the metric of the paired, per-image comparison (weight-free, so every run has it)
PAIRED_METRIC = "patch_swd"


def paired_rows(rows: list[dict], arms: Sequence[str], baselines: Sequence[str]) -> list[dict]:
    """Per-image wins on :data:`PAIRED_METRIC` (lower is better): the first arm against every other
    method, then every other arm against each baseline. Each row: ``method``, ``other``, ``images``
    (scored by both), ``lower`` (images where ``method`` is strictly lower) and both medians, since a
    mean over a few images can hang on one failure (a median and a count do not)."""
    values: dict[str, dict[str, float]] = {}
    for r in rows:
        if _number(r.get(PAIRED_METRIC)):
            values.setdefault(r["method"], {})[r["image"]] = float(r[PAIRED_METRIC])
    pairs = [(arms[0], m) for m in [*arms[1:], *baselines]] if arms else []
    pairs += [(a, b) for a in arms[1:] for b in baselines]
    out = []
    for method, other in pairs:
        mine, theirs = values.get(method, {}), values.get(other, {})
        both = [i for i in mine if i in theirs]
        if not both:
            continue
        out.append(
            {
                "method": method,
                "other": other,
                "images": len(both),
                "lower": sum(mine[i] < theirs[i] for i in both),
                "median": statistics.median(mine[i] for i in both),
                "median_other": statistics.median(theirs[i] for i in both),
            }
        )
    return out


def published_rows(sifid_col: str) -> list[dict]:
    return [
        {
            "kind": "published",
            "method": m,
            "image": "Places50 (50)",
            "source": PUBLISHED_SOURCE,
            sifid_col: s,
            "lpips_diversity": lp,
        }
        for m, s, lp in PUBLISHED
    ]


def sort_rows(rows: list[dict], methods: Sequence[str]) -> list[dict]:
    """Per image (natural order), then methods in ``methods`` order."""
    order = {m: i for i, m in enumerate(methods)}
    return sorted(rows, key=lambda r: (natural_key(r["image"]), order.get(r["method"], len(order))))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def md_table(rows: list[dict], cols: Sequence[str], headers: Sequence[str] | None = None) -> str:
    headers = headers or cols
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _settings_lines(settings: dict[str, Any]) -> list[str]:
    lines = [
        f"Images: `{settings['images_dir']}` ({len(settings.get('images', []))} benchmarked); results: "
        f"`{settings['out']}`; device: {settings.get('device', '?')}.",
        "",
        "Arms (each runs preprocess -> train -> sample -> evaluate on every image):",
        "",
    ]
    for name, arm in settings.get("arms", {}).items():
        lines.append(
            f"- `{name}`: `{arm['spec']}` (model.kind={arm.get('kind', 'unet')}, "
            f"preprocess.max_size={arm['max_size']}, train.steps={arm['train_steps']}, "
            f"samples/image={arm['num_samples']}, sample.steps={arm['sample_steps']})"
        )
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    rows, means, published = result["rows"], result["means"], result["published"]
    columns, settings = result["columns"], result["settings"]
    # deep metrics without weights are n/a everywhere: keep them out of the wide tables (CSV keeps them)
    shown = [c for c in columns if c in EXTRA or c in WEIGHT_FREE or any(_number(r.get(c)) for r in rows)]
    sifid_col = columns[0]
    parts = [
        "# Benchmark: arms side by side with the published baselines",
        "",
        *_settings_lines(settings),
        "",
        "Lower is better: patch_swd (fidelity), copy_fraction (near-exact copied patches), bright_*; higher "
        "is better: copy_nn_dist (farther from the training patches = less copying), pixel_diversity. "
        f"`bright_max_dev` = largest |mean brightness - training image's| (0-1) over an image's samples, "
        f"`bright_over` = samples off by more than {settings.get('brightness_tolerance', 0.1)}. "
        "Seconds are wall time: `train_s` the train stage, `first_sample_s` preprocess + train + sample start-up "
        "+ one sample, `per_sample_s` sampling time / samples. Mean rows: means over the images a method has, "
        "except bright_max_dev (max), bright_over and n_samples (totals). `n/a` = not computed.",
        "",
        "## Mean over images",
        "",
        md_table(means, ["method", "image", *shown], ["method", "images", *shown]),
        "",
        "## Per image",
        "",
        md_table(rows, ["image", "method", *shown]),
        "",
    ]
    if result.get("paired"):
        parts += [
            f"## Per image: {PAIRED_METRIC}, one method against another",
            "",
            f"`lower` = images where the first method's {PAIRED_METRIC} is lower (better); medians over the "
            "images both have.",
            "",
            md_table(
                result["paired"],
                ["method", "other", "lower", "images", "median", "median_other"],
                ["method", "against", "lower on", "of images", "median", "median (against)"],
            ),
            "",
        ]
    if result.get("sheets"):
        parts += ["## Contact sheets", "", "Training image, 4 samples per arm, published baselines (resized):", ""]
        parts += [f"- [{img}]({path})" for img, path in result["sheets"].items()]
        parts.append("")
    if any(_number(r.get(sifid_col)) for r in published):
        parts += [
            "## The paper's Table 1 (Places50, 250 px, paper recipe)",
            "",
            md_table(published, ["method", "source", sifid_col, "lpips_diversity"]),
            "",
            f"Published SIFID sits in the `{sifid_col}` column; the paper does not state its Inception layer "
            "(SinGAN's code uses pool1, its paper and SinDiffusion's supplementary describe pool2): compare "
            "trends, not digits.",
            "",
        ]
    baselines = settings.get("baselines_methods") or []
    if baselines:
        parts += [
            f"Baselines ({', '.join(baselines)}: published samples, one per image) are resized to the first "
            "arm's processed training image and scored with the weight-free metrics; pixel diversity needs "
            ">= 2 samples (n/a); they have no timings.",
            "",
        ]
    for title, items in (
        ("Unavailable metrics", result.get("unavailable") or {}),
        ("Failed", result.get("failures") or {}),
    ):
        if items:
            parts += [f"## {title}", ""] + [f"- `{k}`: {v}" for k, v in items.items()] + [""]
    if result.get("notes"):
        parts += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(parts)


def render_csv(rows: list[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["kind", "method", "image", *columns, "source"], extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in writer.fieldnames})
    return buf.getvalue()


def plot(result: dict[str, Any], path: Path) -> Path:
    """Two panels: (a) SIFID vs LPIPS (paper + arms when available), (b) patch SWD vs copy distance."""
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib

    matplotlib.use("Agg")
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib.pyplot as plt

    rows, means, published, columns = result["rows"], result["means"], result["published"], result["columns"]
    arms = list(result["settings"].get("arms", {}))
    sifid_col = columns[0]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in published:
        a.scatter(r[sifid_col], r["lpips_diversity"], marker="s", s=50)
        a.annotate(
            r["method"], (r[sifid_col], r["lpips_diversity"]), textcoords="offset points", xytext=(4, 4), fontsize=8
        )
    mine = [m for m in means if m["method"] in arms and _number(m.get(sifid_col)) and _number(m.get("lpips_diversity"))]
    for m in mine:
        a.scatter(m[sifid_col], m["lpips_diversity"], marker="*", s=160, label=m["method"])
    if mine:
        a.legend(fontsize=8)
    else:
        a.text(
            0.5,
            0.04,
            "arms: SIFID/LPIPS unavailable (no pretrained weights)",
            transform=a.transAxes,
            ha="center",
            fontsize=8,
            color="gray",
        )
    a.set_xlabel(f"SIFID ({sifid_col}) - lower is more faithful")
    a.set_ylabel("LPIPS diversity - higher is more diverse")
    a.set_title("Paper Table 1 (Places50)" + (" + arms" if mine else ""), fontsize=10)

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        pts = [
            (r["patch_swd"], r["copy_nn_dist"])
            for r in rows
            if r["method"] == method and _number(r.get("patch_swd")) and _number(r.get("copy_nn_dist"))
        ]
        if not pts:
            continue
        c = colours[i % len(colours)]
        b.scatter(*zip(*pts), s=18, alpha=0.5, color=c)
        m = next(x for x in means if x["method"] == method)
        b.scatter(
            m["patch_swd"], m["copy_nn_dist"], s=120, marker="*", color=c, edgecolor="k", label=f"{method} (mean)"
        )
    b.set_xlabel("patch SWD to the training image - lower is more faithful")
    b.set_ylabel("copy NN distance - higher copies less")
    b.set_title("Weight-free metrics measured here (dots: images)", fontsize=10)
    if rows:
        b.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return path


def finish(result: dict[str, Any]) -> dict[str, Any]:
    """Sort the rows, recompute the mean rows, the paired per-image comparison and the list of images
    of ``result`` (in place)."""
    arms = list(result["settings"].get("arms", {}))
    baselines = result["settings"].get("baselines_methods") or []
    methods = [*arms, *baselines]
    result["rows"] = sort_rows(result["rows"], methods)
    order = {m: i for i, m in enumerate(methods)}
    result["means"] = sorted(mean_rows(result["rows"], result["columns"]), key=lambda r: order.get(r["method"], 99))
    result["paired"] = paired_rows(result["rows"], arms, baselines)
    result["images"] = sorted({r["image"] for r in result["rows"]}, key=natural_key)
    result["settings"]["images"] = result["images"]
    return result


def write_report(result: dict[str, Any], out: Path) -> dict[str, str]:
    """Write the markdown, CSV, plot and JSON of ``result`` into ``out``; returns their paths."""

    finish(result)
    files = {k: out / v for k, v in FILES.items()}
    result["files"] = {k: str(v) for k, v in files.items()}
    md = render_markdown(result)
    atomic_write(files["markdown"], lambda tmp: tmp.write_text(md))
    table = render_csv(result["rows"] + result["means"] + result["published"], result["columns"])
    atomic_write(files["csv"], lambda tmp: tmp.write_text(table))
    plot(result, files["plot"])
    write_metrics_json(files["json"], result)  # same guard: no random-backbone number in any file
    return result["files"]


def load_result(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / FILES["json"]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; is {folder} the --out folder of a finished `sindiffusion benchmark`?"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    for key in ("rows", "settings", "columns"):
        if key not in data:
            raise ValueError(f"{path}: no {key!r}; written by an older version of `sindiffusion benchmark`?")
    return data


def merge_results(folders: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Join partial benchmark runs into ``out`` (tables, plot, JSON, contact sheets).

    The runs must have the same arms with the same settings (fingerprints) and the same metric
    columns, else ValueError naming the folder. An (image, method) row present in several runs
    is taken from the first folder that has it (a note says so).
    """
    if len(folders) < 2:
        raise ValueError("benchmark-merge: give at least two benchmark folders")
    out = Path(out)
    results = [load_result(f) for f in folders]
    first, where = results[0], Path(folders[0])
    arms = {n: a["fingerprint"] for n, a in first["settings"].get("arms", {}).items()}
    for res, folder in zip(results[1:], folders[1:]):
        other = {n: a["fingerprint"] for n, a in res["settings"].get("arms", {}).items()}
        if other != arms or res["columns"] != first["columns"]:
            raise ValueError(
                f"{folder}: its arms/settings differ from {where}'s ({sorted(other)} vs {sorted(arms)}, "
                "or another configuration under the same name): only runs of one command merge"
            )
    merged: dict[str, Any] = {
        **json.loads(json.dumps(first)),
        "rows": [],
        "failures": {},
        "unavailable": {},
        "notes": [],
        "sheets": {},
    }
    seen: dict[tuple[str, str], str] = {}
    (out / "sheets").mkdir(parents=True, exist_ok=True)
    for res, folder in zip(results, folders):
        for r in res["rows"]:
            key = (r["method"], r["image"])
            if key in seen:
                merged["notes"].append(f"{r['method']}/{r['image']}: in {seen[key]} and {folder}; kept {seen[key]}")
                continue
            seen[key] = str(folder)
            merged["rows"].append(r)
        merged["failures"].update(res.get("failures") or {})
        merged["unavailable"].update(res.get("unavailable") or {})
        merged["notes"] += [n for n in res.get("notes") or [] if n not in merged["notes"]]
        for image, rel in (res.get("sheets") or {}).items():
            src = Path(folder) / rel
            if image not in merged["sheets"] and src.is_file():
                shutil.copyfile(src, out / rel)
                merged["sheets"][image] = rel
    done = {f"{m}/{i}" for m, i in seen}
    merged["failures"] = {k: v for k, v in merged["failures"].items() if k not in done}
    merged["settings"]["out"] = str(out)
    merged["settings"]["merged_from"] = [str(f) for f in folders]
    merged["settings"]["seconds"] = sum(float(r["settings"].get("seconds") or 0) for r in results)
    merged["sheets"] = dict(sorted(merged["sheets"].items(), key=lambda kv: natural_key(kv[0])))
    write_report(merged, out)
    return merged
