"""Shared helpers of the workflow tests: a tiny pipeline in a temporary directory.

The tests never run the pipeline in the repository: :func:`make_project` copies what a run needs
(``workflow/``, ``dvc.yaml``, ``.gitignore``, ``environment.yml``) into a temporary directory, writes a TINY
params.yaml there (32-48 px images, an 8-channel 2-level UNet, 15 training steps, 2 samples of
10 DDIM steps) and a few small synthetic images.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from tests.tiny import TINY_MODEL_SECTION

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES = REPO_ROOT / "workflow" / "profiles"

TINY_PARAMS: dict = {
    "data": {"images_dir": "data/images", "images": [], "results_dir": "results"},
    "preprocess": {"max_size": 48},
    "model": TINY_MODEL_SECTION,
    "diffusion": {
        "timesteps": 100,
        "schedule": "linear",
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "variance": "fixed_large",
    },
    "train": {
        "steps": 15,
        "batch_size": 2,
        "lr": 0.001,
        "ema_decay": 0.9,
        "crop_size": None,
        "log_every": 5,
        "save_every": 10,
        "seed": 0,
        "device": "cpu",
    },
    "sample": {
        "num_samples": 2,
        "batch_size": 2,
        "sampler": "ddim",
        "steps": 10,
        "eta": 1.0,
        "scale_w": 1.0,
        "seed": 0,
        "device": "cpu",
    },
    "tracking": {"enabled": True, "experiment": "sindiffusion", "tracking_uri": None, "log_checkpoint": False},
    "evaluate": {"sifid_layers": ["pool1"], "deep": True, "device": "cpu", "copy_stride": 4},
    "manipulate": {
        "sampler": "ddim",
        "steps": 5,
        "eta": 1.0,
        "seed": 0,
        "device": "cpu",
        "edits": {"tiny_a": [{"name": "wide", "kind": "outpaint", "right": 8}]},
    },
}

#: name -> (height, width) of the synthetic test images
TINY_IMAGES = {"tiny_a": (40, 48), "tiny_b": (48, 36)}


def tiny_image(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A small smooth colour texture (blobs + stripes), saved as PNG."""
    from PIL import Image

    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(2, 8), rng.uniform(2, 8), rng.uniform(0, 6.3)
        img[..., c] = 0.5 + 0.35 * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
    img += rng.normal(0, 0.05, img.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def make_project(
    root: Path,
    images: dict[str, tuple[int, int]] | None = None,
    params: dict | None = None,
    list_images: bool = False,
    with_src: bool = False,
) -> Path:
    """Copy the workflow into ``root`` with a tiny params.yaml and synthetic images.

    ``list_images``: write the names into ``data.images`` (needed by dvc.yaml); ``with_src``:
    copy ``src/sindiffusion`` too (dvc.yaml's code dependencies).
    """
    root.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    shutil.copytree(REPO_ROOT / "workflow", root / "workflow", ignore=ignore)
    # .gitignore too: it ignores results/, which decides what git (hence `dvc exp show`) can see
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "environment.yml"):
        shutil.copy2(REPO_ROOT / name, root / name)
    if with_src:
        shutil.copytree(REPO_ROOT / "src" / "sindiffusion", root / "src" / "sindiffusion", ignore=ignore)
    images = TINY_IMAGES if images is None else images
    for i, (name, size) in enumerate(sorted(images.items())):
        tiny_image(root / "data" / "images" / f"{name}.png", size, seed=i)
    p = yaml.safe_load(yaml.safe_dump(TINY_PARAMS))  # deep copy
    for section, values in (params or {}).items():
        p.setdefault(section, {}).update(values)
    if list_images:
        p["data"]["images"] = sorted(images)
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return root


def clean_env(**extra: str | None) -> dict:
    """os.environ without profile/tracking settings of the caller; ``extra`` sets (None: unsets)."""
    env = dict(os.environ)
    for key in ("SNAKEMAKE_PROFILE", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        env.pop(key, None)
    env.setdefault("SINDIFFUSION_TRACKING", "off")
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(
    cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 300, log: Path | None = None
) -> subprocess.CompletedProcess:
    """Run a command, return its combined output; SIGINT (then kill) on timeout."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as err:
        proc.send_signal(signal.SIGINT)  # snakemake cancels its Slurm jobs on SIGINT
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        raise AssertionError(f"{' '.join(cmd)} timed out after {timeout}s:\n{out[-5000:]}") from err
    elapsed = time.monotonic() - t0
    if log is not None:
        log.write_text(f"$ {' '.join(cmd)}\n# {elapsed:.1f} s, rc={proc.returncode}\n{out}")
    print(f"[{elapsed:6.1f} s] rc={proc.returncode} {' '.join(cmd)}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


def snakemake(
    root: Path, *args: str, env: dict | None = None, timeout: float = 300, log_name: str | None = None
) -> subprocess.CompletedProcess:
    log = root / log_name if log_name else None
    return run([sys.executable, "-m", "snakemake", *args], root, env, timeout, log)


def dry_run_jobs(output: str) -> list[dict]:
    """Parse ``snakemake -n -p`` output into ``[{rule, output: [...], shell}]``."""
    jobs: list[dict] = []
    job: dict | None = None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            job = {"rule": m.group(1), "output": [], "shell": None}
            jobs.append(job)
            continue
        if job is None:
            continue
        s = line.strip()
        if s.startswith("output:"):
            job["output"] = [x.strip() for x in s[len("output:") :].split(",") if x.strip()]
        elif s.startswith("Shell command:"):
            job["shell"] = s[len("Shell command:") :].strip()
    return jobs
