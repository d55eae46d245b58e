"""Receptive-field study (SinDiffusion paper, Table 4) at laptop scale.

The paper's claim: the ratio of the denoiser's receptive field (RF) to the image size decides the
trade-off. A small RF only sees local patches (diverse samples without global structure); an RF
near the whole image lets the model memorise the layout (samples copy the training image).

This module trains several tiny UNets that differ only in depth (number of levels, ResBlocks per
level; hence RF) on one small image, samples each, and scores the samples with the weight-free
metrics (no download): pixel diversity (higher = more diverse), copy NN distance (lower = closer
to training patches), copy fraction (higher = more near-exact copies) and patch SWD (lower =
patch statistics closer to the image). It reuses the pipeline's stage functions (preprocess,
train, sample, evaluate) with a params dict per model, so each model's artifacts sit in
``out/<model>/<image>/...`` as in a normal run; the table goes to ``out/rf_study.{csv,json,md}``
and the plots to ``out/rf_study.png`` and ``out/rf_study_samples.png``.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..artifacts import atomic_write
from ..config import Params, load_params
from ..models.unet import UNet
from ..stages import evaluate, preprocess, sample, train
from ..tracking import stage_run

#: (levels, encoder_blocks, decoder_blocks): RF 17, 45, 101 px = 0.35, 0.94, 2.1 of a 48 px image.
#: Measured with these defaults on Places50 image 1 (2-core CPU, ~7.5 CPU-minutes): the 1-level model
#: makes structureless texture, the 2-level one the layout with variations, the 3-level one near copies.
DEFAULT_CONFIGS: tuple[tuple[int, int, int], ...] = ((1, 1, 2), (2, 1, 2), (3, 1, 2))
METRICS = ("pixel_diversity", "copy_nn_dist", "copy_fraction", "patch_swd")


def parse_config(text: str) -> tuple[int, int, int]:
    """``"3:1:2"`` -> ``(levels, encoder_blocks, decoder_blocks)``."""
    try:
        levels, enc, dec = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"rf-study config {text!r}: expected LEVELS:ENC:DEC, e.g. 3:1:2") from None
    return levels, enc, dec


def model_section(levels: int, enc: int, dec: int, base_channels: int) -> dict[str, Any]:
    mult = [1] + [2] * (levels - 1)
    return {
        "preset": "custom",
        "base_channels": base_channels,
        "channel_mult": mult,
        "encoder_blocks": enc,
        "decoder_blocks": dec,
        "groups": 4,
        "dropout": 0.0,
    }


def study_params(
    out: Path,
    name: str,
    levels: int,
    enc: int,
    dec: int,
    *,
    max_size: int,
    steps: int,
    num_samples: int,
    sample_steps: int,
    base_channels: int,
    batch_size: int,
    device: str,
    seed: int,
    tracking: dict[str, Any],
) -> Params:
    raw = {
        "data": {"images_dir": str(out), "results_dir": str(out / name)},
        "preprocess": {"max_size": max_size},
        "model": model_section(levels, enc, dec, base_channels),
        "diffusion": {"timesteps": 1000, "schedule": "linear"},
        # full image, no rescaling: the large-RF model can see (and memorise) the whole layout
        "train": {
            "steps": steps,
            "batch_size": batch_size,
            "lr": 2e-3,
            "ema_decay": 0.99,
            "ema_warmup": True,
            "scale_min": 1.0,
            "scale_max": 1.0,
            "crop_size": None,
            "seed": seed,
            "log_every": max(1, steps // 10),
            "save_every": steps,
            "device": device,
        },
        "sample": {
            "num_samples": num_samples,
            "batch_size": num_samples,
            "sampler": "ddim",
            "steps": sample_steps,
            "eta": 1.0,
            "seed": seed,
            "device": device,
            "scale_h": 1.0,
            "scale_w": 1.0,
        },
        "evaluate": {"deep": False},
        "tracking": tracking,
    }
    return Params(raw=raw, path=f"rf-study:{name}")


def run_study(
    image: str | Path,
    *,
    out: str | Path = "results-rf-study",
    max_size: int = 48,
    steps: int = 600,
    num_samples: int = 6,
    sample_steps: int = 25,
    base_channels: int = 16,
    batch_size: int = 8,
    configs: Sequence[tuple[int, int, int]] | None = None,
    device: str = "auto",
    seed: int = 0,
    tracking: bool = False,
    params_path: str | Path = "params.yaml",
    progress: bool = True,
) -> dict:
    """Train/sample/score one tiny model per config; returns ``{"rows": [...], "files": {...}}``."""

    image, out = Path(image), Path(out)
    if not image.is_file():
        raise FileNotFoundError(f"{image}: training image not found")
    out.mkdir(parents=True, exist_ok=True)
    track = {"enabled": False}
    if tracking:
        track = dict(load_params(params_path).raw.get("tracking") or {})
        track.setdefault("experiment", "sindiffusion")
        track["experiment"] = f"{track['experiment']}-rf-study"
    name = image.stem
    rows = []
    for levels, enc, dec in configs or DEFAULT_CONFIGS:
        tag = f"L{levels}_E{enc}_D{dec}"
        params = study_params(
            out,
            tag,
            levels,
            enc,
            dec,
            max_size=max_size,
            steps=steps,
            num_samples=num_samples,
            sample_steps=sample_steps,
            base_channels=base_channels,
            batch_size=batch_size,
            device=device,
            seed=seed,
            tracking=track,
        )
        print(f"[rf-study] {tag}: preprocess/train/sample/evaluate", file=sys.stderr, flush=True)
        t0 = time.time()
        meta = preprocess.run(params, name, source=image)
        tm = train.run(params, name, progress=progress)
        t1 = time.time()
        sample.run(params, name, progress=progress)
        metrics = evaluate.run(params, name, verbose=False)
        unet = params.section("model").unet()
        n_params = _count_params(unet)
        row = {
            "model": tag,
            "levels": levels,
            "encoder_blocks": enc,
            "decoder_blocks": dec,
            "parameters": n_params,
            "rf_px": meta["receptive_field_px"],
            "rf_fraction": meta["receptive_field_fraction"],
            "image_size": meta["processed_size"],
            "final_loss": tm["final_loss"],
            "train_seconds": round(t1 - t0, 1),
            "total_seconds": round(time.time() - t0, 1),
            **{k: metrics.get(k) for k in METRICS},
            "samples": str(out / tag / name / "samples" / "grid.png"),
        }
        print(
            f"[rf-study] {tag}: RF {row['rf_px']} px ({row['rf_fraction']:.2f} of the image) "
            + " ".join(f"{k}={row[k]:.4f}" for k in METRICS if row[k] is not None),
            file=sys.stderr,
            flush=True,
        )
        rows.append(row)
    files = {
        "csv": out / "rf_study.csv",
        "json": out / "rf_study.json",
        "markdown": out / "rf_study.md",
        "plot": out / "rf_study.png",
        "samples": out / "rf_study_samples.png",
    }
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[k for k in rows[0] if k != "image_size"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(files["csv"], lambda tmp: tmp.write_text(buf.getvalue()))
    settings = {
        "image": str(image),
        "max_size": max_size,
        "steps": steps,
        "num_samples": num_samples,
        "sample_steps": sample_steps,
        "base_channels": base_channels,
        "batch_size": batch_size,
        "seed": seed,
    }
    atomic_write(
        files["json"], lambda tmp: tmp.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
    )
    md = f"# Receptive-field study on `{image.name}`\n\n{json.dumps(settings)}\n\n```\n{format_table(rows)}\n```\n"
    atomic_write(files["markdown"], lambda tmp: tmp.write_text(md))
    plot_study(rows, files["plot"])
    plot_samples(rows, out / rows[0]["model"] / name / "preprocess" / "image.png", files["samples"])
    if tracking:
        with stage_run(
            "rf-study",
            f"_rf_study_{name}",
            enabled=True,
            experiment=track["experiment"],
            uri=track.get("tracking_uri"),
            local_note=f"The study is still in {out}.",
        ) as tracker:
            tracker.log_params(settings)
            for i, r in enumerate(rows):
                tracker.log_metrics({"rf_fraction": r["rf_fraction"], **{k: r[k] for k in METRICS}}, step=i)
            for f in files.values():
                tracker.log_artifact(f)
    return {"rows": rows, "settings": settings, "files": {k: str(v) for k, v in files.items()}}


def _count_params(unet_config: Any) -> int:
    return sum(p.numel() for p in UNet(unet_config).parameters())


def format_table(rows: Sequence[dict]) -> str:
    head = f"{'model':<11} {'RF px':>6} {'RF/img':>7} {'params':>8} {'loss':>7} " + " ".join(
        f"{k:>15}" for k in METRICS
    )
    lines = [head]
    for r in rows:
        vals = " ".join(f"{'n/a' if r[k] is None else format(r[k], '.4f'):>15}" for k in METRICS)
        lines.append(
            f"{r['model']:<11} {r['rf_px']:>6} {r['rf_fraction']:>7.2f} {r['parameters']:>8} "
            f"{r['final_loss']:>7.4f} {vals}"
        )
    return "\n".join(lines)


def plot_study(rows: Sequence[dict], path: Path) -> Path:
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib

    matplotlib.use("Agg")
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib.pyplot as plt

    x = [r["rf_fraction"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    labels = {
        "pixel_diversity": "pixel diversity (higher = more diverse)",
        "copy_nn_dist": "copy NN distance (lower = copies more)",
        "copy_fraction": "copy fraction (higher = copies more)",
        "patch_swd": "patch SWD (lower = more faithful)",
    }
    for ax, key in zip(axes, METRICS):
        ys = [r[key] for r in rows]
        ax.plot(x, ys, "o-")
        for r, y in zip(rows, ys):
            if y is not None:
                ax.annotate(r["model"], (r["rf_fraction"], y), fontsize=7, textcoords="offset points", xytext=(3, 3))
        ax.set_xscale("log")
        ax.axvline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xlabel("receptive field / image side")
        ax.set_title(labels[key], fontsize=9)
    fig.suptitle("Receptive-field study (paper Table 4 trend): small RF -> diverse, full RF -> copies", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def plot_samples(rows: Sequence[dict], training_image: Path, path: Path) -> Path:
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib

    matplotlib.use("Agg")
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows) + 1, 1, figsize=(8, 1.8 * (len(rows) + 1)))
    axes[0].imshow(Image.open(training_image))
    axes[0].set_title("training image", fontsize=8)
    for ax, r in zip(axes[1:], rows):
        ax.imshow(Image.open(r["samples"]))
        ax.set_title(f"{r['model']}: RF {r['rf_px']} px = {r['rf_fraction']:.2f} of the image", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
