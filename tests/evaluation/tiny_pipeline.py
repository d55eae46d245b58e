"""A tiny end-to-end pipeline run through the CLI, shared by the stage, benchmark and notebook tests.

``tiny_pipeline(tmp_path_factory)`` runs preprocess -> train -> sample -> evaluate for two
synthetic images (~32 px, an 8-channel 2-level UNet, 10 training steps, 2 samples of 5 DDIM
steps) once per test session, tracking to ``sqlite:///<dir>/mlflow.db``, with ``TORCH_HOME``
pointing at an empty folder (no pretrained weights: deep metrics must come out null).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sindiffusion.cli import main
from tests.tiny import TINY_MODEL_SECTION

IMAGES = ("tiny_a", "tiny_b")

TINY_PARAMS = """\
data: {{images_dir: {images}, results_dir: {results}}}
preprocess: {{max_size: 32}}
model: {model}
diffusion: {{timesteps: 1000}}
train: {{steps: {steps}, batch_size: 2, crop_size: null, log_every: 2, save_every: 100, device: cpu}}
sample: {{num_samples: 2, batch_size: 2, sampler: ddim, steps: {sample_steps}, eta: 1.0, device: cpu, scale_w: 1.0}}
evaluate: {{sifid_layers: [pool1, pool2], device: cpu}}
tracking: {{enabled: {tracking}, experiment: tiny, tracking_uri: "{uri}"}}
"""


def write_image(path: Path, seed: int, size: tuple[int, int] = (40, 56)) -> Path:
    """A smooth seeded RGB test image (upsampled noise), saved as PNG."""
    rng = np.random.default_rng(seed)
    low = rng.random((size[0] // 8, size[1] // 8, 3))
    img = Image.fromarray((low * 255).astype(np.uint8)).resize((size[1], size[0]), Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_params(
    root: Path, *, steps: int = 10, sample_steps: int = 5, tracking: bool = True, name: str = "params.yaml"
) -> Path:
    p = root / name
    p.write_text(
        TINY_PARAMS.format(
            images=root / "images",
            results=root / "results",
            steps=steps,
            model=json.dumps(TINY_MODEL_SECTION),
            sample_steps=sample_steps,
            tracking=str(tracking).lower(),
            uri=f"sqlite:///{root / 'mlflow.db'}",
        )
    )
    return p


def cli(*argv: str) -> int:
    return main([str(a) for a in argv])


@dataclass
class Tiny:
    root: Path
    params: Path
    results: Path
    images: tuple[str, ...]
    torch_home: Path

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def metrics(self, image: str) -> dict:
        return json.loads((self.results / image / "evaluate" / "metrics.json").read_text())


def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """Build (once per session) and return the tiny pipeline's outputs."""
    root = tmp_path_factory.getbasetemp() / "tiny_pipeline"
    tiny = Tiny(root, root / "params.yaml", root / "results", IMAGES, root / "torch_home")
    if (root / "done").is_file():
        return tiny
    root.mkdir(parents=True, exist_ok=True)
    tiny.torch_home.mkdir(exist_ok=True)
    for i, name in enumerate(IMAGES):
        write_image(root / "images" / f"{name}.png", seed=i)
    write_params(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SINDIFFUSION_TRACKING", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("TORCH_HOME", str(tiny.torch_home))
        mp.chdir(root)
        for name in IMAGES:
            for stage in ("preprocess", "train", "sample", "evaluate"):
                extra = ["--no-progress"] if stage in ("train", "sample") else []
                rc = cli(stage, "--params", tiny.params, "--image", name, *extra)
                assert rc == 0, f"tiny pipeline: {stage} {name} exited {rc}"
    (root / "done").write_text("ok\n")
    assert os.listdir(tiny.torch_home) == []  # nothing was downloaded
    return tiny
