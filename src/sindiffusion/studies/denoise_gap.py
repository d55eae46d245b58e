"""``sindiffusion denoise-gap``: how far a trained UNet is from the closed-form patch denoiser, per t.

The closed-form denoiser (model kind ``patch``, :mod:`sindiffusion.models.patch`) is the exact
posterior mean over the training image's patches: the best any patch-local denoiser can do on
that image. Noising the training image to each of ``points`` levels t (one seeded noise draw per
level) and asking both models for ``x0`` shows at which noise levels the learned model is still
far from that optimum::

    rmse_gap(t)   = RMSE(x0_unet(x_t), x0_closed(x_t))      the learned model vs the closed form
    rmse_unet(t)  = RMSE(x0_unet(x_t), x0)                  each against the clean image
    rmse_closed(t)= RMSE(x0_closed(x_t), x0)

(images in [-1, 1]). Files in ``out``: ``denoise_gap.csv``, ``denoise_gap.json`` and
``denoise_gap.png`` (the three curves vs t); the curves are logged to MLflow (experiment
``<tracking.experiment>-denoise-gap``, metrics at step = t).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch

from ..artifacts import atomic_write, sha256_file
from ..checkpoint import diffusion_from_checkpoint, load_checkpoint, model_from_checkpoint
from ..data.io import image_to_tensor, load_image
from ..models.kinds import DEFAULT_KIND
from ..models.patch import PatchConfig, PatchDenoiser
from ..tracking import stage_run

COLUMNS = ("t", "abar", "rmse_gap", "rmse_unet", "rmse_closed")


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


@torch.no_grad()
def denoise_gap(
    checkpoint: str | Path,
    *,
    closed_form: PatchConfig | None = None,
    points: int = 12,
    seed: int = 0,
    image_path: str | Path | None = None,
) -> list[dict[str, float]]:
    """The rows of the gap curve (see the module docstring), ``points`` levels from t = 0 to T - 1.

    ``ValueError`` naming the file for a checkpoint of another kind or a training image that is
    missing or not the one the checkpoint was trained on.
    """
    ckpt = load_checkpoint(checkpoint)
    kind = ckpt["config"]["model"].get("kind", DEFAULT_KIND)
    if kind != "unet":
        raise ValueError(
            f"{checkpoint}: denoise-gap compares a trained UNet with the closed form; this checkpoint "
            f"is model.kind={kind!r} (it IS a closed form)"
        )
    if points < 2:
        raise ValueError(f"--points {points}: must be >= 2")
    path = Path(image_path or ckpt["image"]["path"])
    if not path.is_file():
        raise ValueError(f"{path}: the training image of {checkpoint} is missing; pass --image-file")
    if sha256_file(path) != ckpt["image"]["sha256"]:
        raise ValueError(f"{path}: not the image {checkpoint} was trained on (sha256 differs)")
    x0 = image_to_tensor(load_image(path))[None]  # [1, 3, H, W] in [-1, 1]
    diffusion = diffusion_from_checkpoint(ckpt, checkpoint)
    unet = model_from_checkpoint(ckpt, use_ema=True, path=checkpoint)
    closed = PatchDenoiser(closed_form or PatchConfig(), x0, diffusion.alphas_cumprod)
    gen = torch.Generator().manual_seed(seed)
    levels = torch.linspace(0, diffusion.num_timesteps - 1, points).round().long().unique().tolist()
    rows = []
    for t in levels:
        noise = torch.randn(x0.shape, generator=gen)
        tt = torch.tensor([t])
        x_t = diffusion.q_sample(x0, tt, noise)
        x0_unet = diffusion.predict_x0_from_eps(x_t, tt, unet(x_t, tt).float())
        x0_closed = closed.denoise(x_t, int(t))
        rows.append(
            {
                "t": int(t),
                "abar": float(diffusion.alphas_cumprod[t]),
                "rmse_gap": _rmse(x0_unet, x0_closed),
                "rmse_unet": _rmse(x0_unet, x0),
                "rmse_closed": _rmse(x0_closed, x0),
            }
        )
    return rows


def write_outputs(rows: list[dict[str, float]], out: str | Path, meta: dict[str, Any]) -> dict[str, Path]:
    """CSV + JSON + PNG of the curve into ``out`` (each written atomically)."""
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib

    matplotlib.use("Agg")
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    files = {"csv": out / "denoise_gap.csv", "json": out / "denoise_gap.json", "plot": out / "denoise_gap.png"}
    atomic_write(files["csv"], lambda tmp: tmp.write_text(buf.getvalue()))
    atomic_write(files["json"], lambda tmp: tmp.write_text(json.dumps({"rows": rows, **meta}, indent=2)))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ts = [r["t"] for r in rows]
    for key, label in (
        ("rmse_gap", "UNet vs closed form"),
        ("rmse_unet", "UNet vs clean"),
        ("rmse_closed", "closed form vs clean"),
    ):
        ax.plot(ts, [r[key] for r in rows], marker="o", label=label)
    ax.set_xlabel("t (noise level)")
    ax.set_ylabel("RMSE of predicted x0 ([-1, 1])")
    ax.set_title(f"denoise gap: {meta.get('image', '')}")
    ax.legend()
    fig.tight_layout()
    atomic_write(files["plot"], lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return files


def log_mlflow(rows: list[dict[str, float]], files: dict[str, Path], tracking: Any, image: str) -> None:
    """One run in ``<tracking.experiment>-denoise-gap``: the three curves at step = t, and the files."""

    with stage_run(
        "denoise-gap",
        image,
        enabled=tracking.enabled,
        experiment=f"{tracking.experiment}-denoise-gap",
        uri=tracking.tracking_uri,
        local_note=f"The curve is still in {files['csv'].parent}.",
    ) as tracker:
        for r in rows:
            tracker.log_metrics({k: r[k] for k in ("rmse_gap", "rmse_unet", "rmse_closed")}, step=r["t"])
        for f in files.values():
            tracker.log_artifact(f)
