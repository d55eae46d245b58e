"""The training loss curve as a picture (``results/<image>/train/loss.png``): what the Snakemake
report and ``dvc plots show`` display beside ``loss.csv``, which holds the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from ..artifacts import atomic_write


def plot_loss(rows: Iterable[Mapping[str, object]], path: str | Path, title: str = "") -> Path:
    """Write the loss curve of ``rows`` (loss.csv's rows: ``step``, ``loss``) as a PNG, atomically.

    No rows (a training-free model kind, or a training that has not logged yet) gives a picture
    that says so, so the file exists for every model kind.
    """
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib

    matplotlib.use("Agg")
    # why: matplotlib is heavy and only the plot needs it
    import matplotlib.pyplot as plt

    points = [(int(r["step"]), float(r["loss"])) for r in rows if r.get("loss") not in (None, "")]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    if points:
        steps, losses = zip(*points)
        ax.plot(steps, losses, marker="." if len(points) < 50 else None, linewidth=1.2)
        if min(losses) > 0 and max(losses) / min(losses) > 20:
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no training loss (training-free model)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title(title or "training loss", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    finally:
        plt.close(fig)
