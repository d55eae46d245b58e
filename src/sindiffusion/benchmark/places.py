"""One-command benchmark over a folder of images (e.g. Places50), against the published numbers.

For every image of ``images_dir`` (natural order, ``--limit N`` first ones) it runs the
pipeline's own stage functions, preprocess -> train -> sample -> evaluate, with
``data.images_dir`` / ``data.results_dir`` pointed at the folder and ``out`` (so each image's
artifacts land in ``out/<image>/...`` exactly as in a normal run). Then it writes, in ``out``:

* ``benchmark.md``:  per-image metrics, per-method means, and the paper's Table 1 (Places50);
* ``benchmark.csv``: the same rows, machine-readable (``kind`` = image / mean / published);
* ``benchmark.png``: fidelity-diversity plot (paper numbers: SIFID vs LPIPS; measured here:
  patch SWD vs copy distance, where every method has a value);
* ``benchmark.json``: everything above plus failures and settings;

and logs them to MLflow (experiment ``<tracking.experiment>-benchmark`` unless
``tracking.experiment`` is overridden). Published samples of other methods (``baselines``:
one subfolder per method, file ``<image>.<ext>`` = one sample of the same training image) are
resized to the processed training image's size (bicubic, antialiased: same scale as our
samples) and scored with the weight-free metrics; with one sample per image their pixel
diversity is undefined (n/a).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Params, load_params
from ..data.io import atomic_write
from ..paths import IMAGE_SUFFIXES, ImagePaths, list_images

#: SinDiffusion paper, Table 1 (Places50; SIFID lower is better, LPIPS diversity higher is better)
PUBLISHED: tuple[tuple[str, float, float], ...] = (
    ("SinGAN", 0.09, 0.266),
    ("ExSinGAN", 0.10, 0.248),
    ("ConSinGAN", 0.06, 0.305),
    ("GPNN", 0.07, 0.256),
    ("SinDiffusion", 0.06, 0.387),
)
PUBLISHED_SOURCE = "SinDiffusion paper, Table 1 (Places50, 50 images)"
OURS = "SinDiffusion (this run)"
BASELINE_NAMES = {"singan": "SinGAN", "gpnn": "GPNN", "exsingan": "ExSinGAN", "consingan": "ConSinGAN",
                  "sindiffusion": "SinDiffusion"}
WEIGHT_FREE = ("pixel_diversity", "copy_nn_dist", "copy_fraction", "patch_swd")


def natural_key(name: str) -> list[Any]:
    """``"10"`` after ``"9"``: digit runs compare as numbers."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def benchmark_images(images_dir: str | Path, limit: int | None = None) -> list[str]:
    names = sorted(list_images(images_dir), key=natural_key)
    if not names:
        raise FileNotFoundError(f"{images_dir}: no image files found")
    return names[:limit] if limit else names


def benchmark_params(params_path: str | Path, overrides: Sequence[str], images_dir: str | Path,
                     out: str | Path) -> Params:
    """The params with ``data`` pointed at the benchmark folders (what ``--set data.images_dir=...``
    would do, without YAML-parsing path strings)."""
    params = load_params(params_path, list(overrides))
    data = dict(params.raw.get("data") or {})
    data.update(images_dir=str(images_dir), results_dir=str(out), images=[])
    params.raw["data"] = data
    if not any(o.strip().startswith("tracking.experiment=") for o in overrides):
        tracking = dict(params.raw.get("tracking") or {})
        tracking["experiment"] = f"{tracking.get('experiment', 'sindiffusion')}-benchmark"
        params.raw["tracking"] = tracking
    params.section("data")
    return params


def metric_columns(params: Params) -> list[str]:
    from ..evaluation import sifid_metric_name

    cfg = params.section("evaluate")
    return [sifid_metric_name(layer) for layer in cfg.sifid_layers] + ["lpips_diversity", *WEIGHT_FREE]


def find_baseline(folder: Path, name: str) -> Path | None:
    hits = [p for p in sorted(folder.glob(f"{name}.*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    return hits[0] if hits else None


def score_baselines(params: Params, names: Sequence[str], baselines: str | Path) -> tuple[list[dict], list[str]]:
    """Weight-free metrics of published samples, one row per (method, image) found.

    Each sample is resized to the processed training image's size (the scale our samples are
    scored at) and compared with it. Returns ``(rows, notes)``.
    """
    from ..evaluation import resize_to
    from ..stages.evaluate import compute, load_unit

    root = Path(baselines)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: baselines folder not found")
    methods = sorted(p for p in root.iterdir() if p.is_dir())
    if not methods:
        raise FileNotFoundError(f"{root}: no method subfolders (expected e.g. singan/, gpnn/)")
    results = Path(params.section("data").results_dir)
    rows, notes = [], []
    for folder in methods:
        method = BASELINE_NAMES.get(folder.name.lower(), folder.name)
        for name in names:
            processed = ImagePaths(name, results).processed
            sample = find_baseline(folder, name)
            if sample is None or not processed.is_file():
                notes.append(f"{method}/{name}: skipped ({'no sample' if sample is None else 'no processed image'})")
                continue
            real = load_unit(processed)
            fake = load_unit(sample)
            original = list(fake.shape[-2:])
            fake = resize_to(fake, tuple(real.shape[-2:]))
            m = compute(params, real, fake, deep=False)
            m["sample_size"], m["scored_size"] = original, list(real.shape[-2:])
            rows.append({"kind": "image", "method": method, "image": name, "source": str(sample), **m})
    return rows, notes


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(vals) / len(vals) if vals else None


def mean_rows(rows: list[dict], columns: Sequence[str]) -> list[dict]:
    """One ``kind = mean`` row per method: the mean of each column over the images that have it."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        row = {"kind": "mean", "method": method, "image": f"mean of {len(mine)}", "source": "measured here"}
        row.update({c: _mean([r.get(c) for r in mine]) for c in columns})
        out.append(row)
    return out


def published_rows(sifid_col: str) -> list[dict]:
    return [{"kind": "published", "method": m, "image": "Places50 (50)", "source": PUBLISHED_SOURCE,
             sifid_col: s, "lpips_diversity": lp} for m, s, lp in PUBLISHED]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def _md_table(rows: list[dict], cols: Sequence[str], headers: Sequence[str]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(rows: list[dict], means: list[dict], published: list[dict], columns: Sequence[str],
                    unavailable: dict[str, str], failures: dict[str, str], notes: Sequence[str],
                    settings: dict[str, Any]) -> str:
    cols = ["method", "image", *columns]
    headers = ["method", "image", *columns]
    sifid_col = columns[0]
    parts = [
        "# Benchmark: SinDiffusion pipeline vs published numbers",
        "",
        f"Images: `{settings['images_dir']}` ({len({r['image'] for r in rows if r['method'] == OURS})} evaluated); "
        f"results: `{settings['out']}`; device: {settings.get('device', '?')}; "
        f"train.steps={settings['train_steps']}, samples/image={settings['num_samples']}, "
        f"preprocess.max_size={settings['max_size']}.",
        "",
        "Lower is better: SIFID, copy_fraction (less copying), patch_swd. Higher is better: LPIPS diversity, "
        "pixel_diversity, copy_nn_dist (farther from the training patches = less copying). "
        "`n/a` = not computed (reasons below).",
        "",
        "## Summary: means measured here and the paper's Table 1",
        "",
        _md_table(means + published, ["method", "source", "image", *columns], ["method", "source", "images", *columns]),
        "",
        f"Published SIFID sits in the `{sifid_col}` column; the paper does not state its Inception layer "
        "(SinGAN's code uses pool1, its paper and SinDiffusion's supplementary describe pool2), and it scores 50 "
        "images at 250 px with the paper's training recipe, so compare trends, not digits.",
        "",
        "## Per image",
        "",
        _md_table(rows, cols, headers),
    ]
    if unavailable:
        parts += ["", "## Unavailable metrics", ""]
        parts += [f"- `{k}`: {v}" for k, v in unavailable.items()]
    if any(r["method"] != OURS for r in rows):
        parts += ["", "Baselines (published samples, one per image) are resized to the processed training image's "
                  "size and scored with the weight-free metrics only; pixel diversity needs >= 2 samples (n/a)."]
    if failures:
        parts += ["", "## Failed images", ""] + [f"- `{k}`: {v}" for k, v in failures.items()]
    if notes:
        parts += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"


def render_csv(rows: list[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["kind", "method", "image", *columns, "source"], extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in writer.fieldnames})
    return buf.getvalue()


def plot(rows: list[dict], means: list[dict], published: list[dict], columns: Sequence[str], path: Path) -> Path:
    """Two panels: (a) SIFID vs LPIPS (paper + ours when available), (b) patch SWD vs copy distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sifid_col = columns[0]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in published:
        a.scatter(r[sifid_col], r["lpips_diversity"], marker="s", s=50)
        a.annotate(r["method"], (r[sifid_col], r["lpips_diversity"]), textcoords="offset points", xytext=(4, 4),
                   fontsize=8)
    ours = [m for m in means if m["method"] == OURS]
    if ours and ours[0].get(sifid_col) is not None and ours[0].get("lpips_diversity") is not None:
        a.scatter(ours[0][sifid_col], ours[0]["lpips_diversity"], marker="*", s=160, color="k", label=OURS)
        a.legend(fontsize=8)
    else:
        a.text(0.5, 0.04, "this run: SIFID/LPIPS unavailable (no pretrained weights)", transform=a.transAxes,
               ha="center", fontsize=8, color="gray")
    a.set_xlabel(f"SIFID ({sifid_col}) - lower is more faithful")
    a.set_ylabel("LPIPS diversity - higher is more diverse")
    a.set_title("Paper Table 1 (Places50)" + (" + this run" if ours else ""), fontsize=10)

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        pts = [(r["patch_swd"], r["copy_nn_dist"]) for r in rows
               if r["method"] == method and r.get("patch_swd") is not None and r.get("copy_nn_dist") is not None]
        if not pts:
            continue
        c = colours[i % len(colours)]
        b.scatter(*zip(*pts), s=18, alpha=0.5, color=c)
        m = next(x for x in means if x["method"] == method)
        b.scatter(m["patch_swd"], m["copy_nn_dist"], s=120, marker="*", color=c, edgecolor="k", label=f"{method} (mean)")
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


def run_benchmark(images_dir: str | Path, *, out: str | Path = "results-benchmark",
                  params_path: str | Path = "params.yaml", overrides: Sequence[str] = (), limit: int | None = None,
                  baselines: str | Path | None = None, weights_dir: str | Path | None = None,
                  skip_existing: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the pipeline over ``images_dir`` and write the tables and the plot into ``out``.

    Returns a dict with ``images``, ``rows`` (per image), ``means``, ``published``, ``failures``
    and ``files`` (markdown, csv, plot, json). Raises if no image could be evaluated.
    """
    from ..stages import evaluate, preprocess, sample, train
    from ..tracking import stage_run
    from ..training.trainer import resolve_device

    images_dir, out = Path(images_dir), Path(out)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: images folder not found")
    if baselines is not None and not Path(baselines).is_dir():
        raise FileNotFoundError(f"{baselines}: baselines folder not found")
    names = benchmark_images(images_dir, limit)
    params = benchmark_params(params_path, overrides, images_dir, out)
    columns = metric_columns(params)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(params.section("evaluate").device)
    models, unavailable = evaluate.load_models(params, weights_dir, device)
    rows: list[dict] = []
    failures: dict[str, str] = {}
    t0 = time.time()
    for i, name in enumerate(names, 1):
        print(f"[benchmark {i}/{len(names)}] {name}", file=sys.stderr, flush=True)
        paths = ImagePaths(name, out)
        try:
            if skip_existing and paths.eval_metrics.is_file():
                metrics = json.loads(paths.eval_metrics.read_text())
            else:
                preprocess.run(params, name)
                train.run(params, name, progress=progress)
                sample.run(params, name, progress=progress)
                metrics = evaluate.run(params, name, weights_dir=weights_dir, models=models, unavailable=unavailable)
        except Exception as err:  # one bad image must not sink a 50-image benchmark
            failures[name] = f"{type(err).__name__}: {err}"
            print(f"[benchmark] {name} FAILED: {failures[name]}", file=sys.stderr, flush=True)
            traceback.print_exc(file=sys.stderr)
            continue
        rows.append({"kind": "image", "method": OURS, "image": name, "source": str(paths.samples), **metrics})
        unavailable.update(metrics.get("unavailable") or {})
    if not rows:
        raise RuntimeError(f"benchmark: no image could be evaluated: {failures}")
    notes: list[str] = []
    if baselines is not None:
        base_rows, notes = score_baselines(params, [r["image"] for r in rows], baselines)
        rows += base_rows
    # the pixel-diversity reason of single-sample baselines is explained in the text, not listed
    unavailable = {k: v for k, v in unavailable.items() if k != "pixel_diversity"}
    means = mean_rows(rows, columns)
    published = published_rows(columns[0])
    sections = {s: params.section(s) for s in ("train", "sample", "preprocess")}
    settings = {"images_dir": str(images_dir), "out": str(out), "device": str(device), "limit": limit,
                "train_steps": sections["train"].steps, "num_samples": sections["sample"].num_samples,
                "max_size": sections["preprocess"].max_size, "baselines": str(baselines) if baselines else None,
                "seconds": round(time.time() - t0, 1)}
    files = {"markdown": out / "benchmark.md", "csv": out / "benchmark.csv", "plot": out / "benchmark.png",
             "json": out / "benchmark.json"}
    md = render_markdown(rows, means, published, columns, unavailable, failures, notes, settings)
    atomic_write(files["markdown"], lambda tmp: tmp.write_text(md))
    table = render_csv(rows + means + published, columns)
    atomic_write(files["csv"], lambda tmp: tmp.write_text(table))
    plot(rows, means, published, columns, files["plot"])
    result = {"images": [r["image"] for r in rows if r["method"] == OURS], "rows": rows, "means": means,
              "published": published, "failures": failures, "unavailable": unavailable, "notes": notes,
              "settings": settings, "columns": columns, "files": {k: str(v) for k, v in files.items()}}
    from ..evaluation import write_metrics_json

    write_metrics_json(files["json"], result)  # same guard: no random-backbone number in any file
    tracking = params.section("tracking")
    with stage_run("benchmark", "_benchmark", enabled=tracking.enabled, experiment=tracking.experiment,
                   uri=tracking.tracking_uri, local_note=f"The tables are still in {out}.") as tracker:
        tracker.log_params({"images_dir": str(images_dir), "num_images": len(result["images"]), **settings})
        logged = {}
        for m in means:
            prefix = "ours" if m["method"] == OURS else re.sub(r"\W+", "_", m["method"].lower())
            logged.update({f"{prefix}.mean_{c}": m[c] for c in columns if m.get(c) is not None})
        tracker.log_metrics(logged)
        for f in files.values():
            tracker.log_artifact(f)
    print(md)
    return result
