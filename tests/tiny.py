"""The test suite's only tiny-project builder: every tiny model, image, params file and project comes from here.

No other module in tests/ writes a ``params.yaml`` or YAML of its own: they call this module
(``tests/test_tiny_builder.py`` fails otherwise). Entry point: :func:`tiny_project`, a folder with a
params file and synthetic images, optionally with the workflow (``workflow/``, ``dvc.yaml``, ...)
copied in for Snakemake and DVC. The params come from one base, :data:`TINY_PARAMS`, changed by a
named recipe (:data:`RECIPES`), then by the caller's sections:

* ``stage`` (the default): one 40x48 image ``img``, 6 training steps, 2 samples of 5 DDIM steps;
  the stage, CLI, reliability and tracking tests;
* ``pipeline``: images ``tiny_a``, ``tiny_b`` in ``<root>/images``, 10 steps, evaluation with
  pool1+pool2, tracking to ``sqlite:///<root>/mlflow.db``; :func:`tiny_pipeline`, the benchmark
  and the studies;
* ``workflow``: images ``tiny_a`` (40x48) and ``tiny_b`` (48x36), 15 steps, an outpaint edit of
  ``tiny_a``; the Snakemake, DVC and Slurm tests;
* ``manipulate``: only ``data``, ``tracking`` (off) and a ``manipulate`` section of 4 DDIM steps;
  the edit tests, with checkpoints from :func:`make_checkpoint`.

Also here: :data:`TINY_UNET` (the tiny model), :func:`smooth_image` (a tensor), :func:`write_image`
(a PNG/JPEG), :func:`write_params` (a recipe's params file alone), :func:`write_params_file` and
:func:`edit_params` (the one writer of params files, for any content: the config tests use it too),
:func:`make_checkpoint` (a checkpoint trained 2 steps), :func:`make_bench` (a benchmark's inputs),
:func:`tiny_pipeline` (the pipeline run once per session) and the ``one_torch_thread`` fixture.
``tests/conftest.py`` exposes some as fixtures (``tiny_unet``, ``smooth``, ``tiny_checkpoint``,
``tiny_trained``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from sindiffusion.cli import main
from sindiffusion.models import UNetConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

#: 8 channels, 2 levels: ~90 k parameters, receptive field 45 px; sizes must be multiples of 2.
TINY_UNET = UNetConfig(base_channels=8, channel_mult=(1, 2), encoder_blocks=1, decoder_blocks=2, groups=4)

#: :data:`TINY_UNET` as the ``model`` section of a params.yaml (plain YAML types).
TINY_MODEL_SECTION: dict = {
    "preset": "custom",
    **{
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(TINY_UNET).items()
        if k != "in_channels"
    },
}  # RGB: not a params key

#: The base of every recipe (the ``stage`` recipe as it is): CPU, seconds per stage.
TINY_PARAMS: dict = {
    "data": {"images_dir": "data/images", "images": [], "results_dir": "results"},
    "preprocess": {"max_size": 48, "max_pixels": 100_000_000, "allow_large": False},
    "model": TINY_MODEL_SECTION,
    "diffusion": {"timesteps": 100},
    "train": {
        "steps": 6,
        "batch_size": 2,
        "lr": 0.002,
        "log_every": 1,
        "save_every": 100,
        "crop_size": None,
        "ema_decay": 0.9,
        "seed": 0,
        "device": "cpu",
    },
    "sample": {
        "num_samples": 2,
        "batch_size": 2,
        "sampler": "ddim",
        "steps": 5,
        "eta": 1.0,
        "seed": 0,
        "device": "cpu",
    },
    "tracking": {"enabled": True, "experiment": "sindiffusion-test", "tracking_uri": None},
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a recipe changes :data:`TINY_PARAMS` and which images its projects get.

    ``changes``: keys updated per section (a new section is added); ``{root}`` in a string becomes the
    project folder. ``keep``: the base sections kept (None: all). ``images``: name -> (height, width),
    drawn with ``texture`` and seeds 0, 1, ... in name order, into the params' ``data.images_dir``.
    ``workflow``: its projects get a copy of what a Snakemake/DVC run needs (see :func:`tiny_project`).
    """

    changes: Mapping[str, dict] = dataclasses.field(default_factory=dict)
    keep: tuple[str, ...] | None = None
    images: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    texture: str = "stripes"
    workflow: bool = False


RECIPES: dict[str, Recipe] = {
    "stage": Recipe(images={"img": (40, 48)}),
    "pipeline": Recipe(
        changes={
            "data": {"images_dir": "{root}/images", "results_dir": "{root}/results"},
            "preprocess": {"max_size": 32},
            "diffusion": {"timesteps": 1000},
            "train": {"steps": 10, "lr": 0.0005, "ema_decay": 0.9999, "log_every": 2},  # lr, ema: the defaults
            "sample": {"scale_w": 1.0},
            "evaluate": {"sifid_layers": ["pool1", "pool2"], "device": "cpu"},
            "tracking": {"experiment": "tiny", "tracking_uri": "sqlite:///{root}/mlflow.db"},
        },
        images={"tiny_a": (40, 56), "tiny_b": (40, 56)},
        texture="noise",
    ),
    "workflow": Recipe(
        changes={
            # every key spelled: DVC tracks the params by name
            "diffusion": {"schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "variance": "fixed_large"},
            "train": {"steps": 15, "lr": 0.001, "log_every": 5, "save_every": 10},
            "sample": {"steps": 10, "scale_w": 1.0},
            "tracking": {"experiment": "sindiffusion", "log_checkpoint": False},
            "evaluate": {"sifid_layers": ["pool1"], "deep": True, "device": "cpu", "copy_stride": 4},
            "manipulate": {
                "sampler": "ddim",
                "steps": 5,
                "eta": 1.0,
                "seed": 0,
                "device": "cpu",
                "edits": {"tiny_a": [{"name": "wide", "kind": "outpaint", "right": 8}]},
            },
        },
        images={"tiny_a": (40, 48), "tiny_b": (48, 36)},
        texture="waves",
        workflow=True,
    ),
    "manipulate": Recipe(
        keep=("data",),
        changes={
            "data": {"results_dir": "{root}/results"},
            "tracking": {"enabled": False},
            "manipulate": {
                "sampler": "ddim",
                "steps": 4,
                "eta": 1.0,
                "seed": 0,
                "num": 1,
                "batch_size": 2,
                "device": "cpu",
                "edits": {},
            },
        },
    ),
}


# ---------------------------------------------------------------------------------------------- params
def _update(params: dict, sections: Mapping[str, Any], replace: Mapping[str, Any] | None) -> dict:
    for name, values in sections.items():
        params.setdefault(name, {}).update(copy.deepcopy(values))
    for name, value in (replace or {}).items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = copy.deepcopy(value)
    return params


def _with_root(value: Any, root: Path | None) -> Any:
    if isinstance(value, str) and "{root}" in value:
        assert root is not None, f"{value!r} needs the project folder"
        return value.replace("{root}", str(root))
    if isinstance(value, dict):
        return {k: _with_root(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_root(v, root) for v in value]
    return value


def tiny_params(
    recipe: str = "stage", root: Path | None = None, *, replace: Mapping[str, Any] | None = None, **sections: dict
) -> dict:
    """The params of a tiny project (plain YAML types): :data:`TINY_PARAMS` changed by ``recipe``, then each
    of ``sections``' keys updated, then each section of ``replace`` replaced whole (``None``: removed)."""
    spec = RECIPES[recipe]
    params = {k: copy.deepcopy(v) for k, v in TINY_PARAMS.items() if spec.keep is None or k in spec.keep}
    params = _update(_update(params, spec.changes, None), sections, replace)
    return _with_root(params, root)


def write_params_file(path: Path, content: Mapping[str, Any] | str) -> Path:
    """The one writer of params files: ``content`` dumped as YAML (in its order), or a string as it is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(dict(content), sort_keys=False))
    return path


def write_params(
    root: Path,
    recipe: str = "stage",
    *,
    name: str = "params.yaml",
    replace: Mapping[str, Any] | None = None,
    **sections: dict,
) -> Path:
    """``<root>/<name>`` holding :func:`tiny_params` (nothing else: :func:`tiny_project` adds the images)."""
    return write_params_file(Path(root) / name, tiny_params(recipe, Path(root), replace=replace, **sections))


def edit_params(path: Path, *, replace: Mapping[str, Any] | None = None, **sections: dict) -> Path:
    """Rewrite the params file ``path``: each of ``sections``' keys updated, each section of ``replace``
    replaced whole (``None``: removed)."""
    params = yaml.safe_load(Path(path).read_text()) or {}
    return write_params_file(path, _update(params, sections, replace))


# ---------------------------------------------------------------------------------------------- images
def smooth_image(seed: int, height: int = 32, width: int | None = None, batch: int = 1) -> torch.Tensor:
    """A smooth random image ``[batch, 3, height, width]`` in [-0.9, 0.9] (4x4 noise, bilinear upsampled)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((batch, 3, 4, 4), generator=g) * 1.8 - 0.9
    img = torch.nn.functional.interpolate(low, size=(height, width or height), mode="bilinear", align_corners=False)
    return img.clamp(-0.9, 0.9)


def _stripes(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 127 + 100 * np.sin(xx / 3.0 + seed)[..., None] * np.array([1.0, 0.5, -0.5])
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    low = np.random.default_rng(seed).random((h // 8, w // 8, 3))
    img = Image.fromarray((low * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img)


def _waves(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(2, 8), rng.uniform(2, 8), rng.uniform(0, 6.3)
        img[..., c] = 0.5 + 0.35 * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
    img += rng.normal(0, 0.05, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


#: The synthetic textures of :func:`write_image`: name -> (draw(h, w, seed) -> uint8 [h, w, 3], default size).
TEXTURES: dict[str, tuple[Callable[[int, int, int], np.ndarray], tuple[int, int]]] = {
    "stripes": (_stripes, (40, 48)),  # horizontal sine stripes + pixel noise
    "noise": (_noise, (40, 56)),  # 1/8-size noise, bicubic upsampled (smooth blobs)
    "waves": (_waves, (40, 48)),  # one oblique sine wave per channel + a little noise
}


def write_image(
    path: Path, size: tuple[int, int] | None = None, seed: int = 0, *, texture: str = "stripes", mode: str = "RGB"
) -> Path:
    """A small seeded synthetic image ``size`` = (height, width) (default: the texture's) at ``path``,
    converted to ``mode``; the suffix picks the format."""
    draw, default = TEXTURES[texture]
    h, w = size or default
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(draw(h, w, seed)).convert(mode).save(path)
    return path


# --------------------------------------------------------------------------------------------- projects
@dataclasses.dataclass(frozen=True)
class TinyProject:
    """A folder made by :func:`tiny_project`: its params file and image names, and where outputs go."""

    root: Path
    params: Path
    images: tuple[str, ...]
    recipe: str = "stage"

    def _data(self, key: str) -> Path:
        value = (yaml.safe_load(self.params.read_text()).get("data") or {}).get(key)
        return self.root / value

    @property
    def images_dir(self) -> Path:
        return self._data("images_dir")

    @property
    def results(self) -> Path:
        return self._data("results_dir")

    @property
    def torch_home(self) -> Path:
        """``<root>/torch_home``: where :func:`tiny_pipeline` points ``TORCH_HOME`` (no weights there)."""
        return self.root / "torch_home"

    @property
    def tracking_uri(self) -> str:
        """The ``pipeline`` recipe's tracking store."""
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def metrics(self, image: str) -> dict:
        """``results/<image>/evaluate/metrics.json``."""
        return json.loads((self.results / image / "evaluate" / "metrics.json").read_text())

    def edit(self, *, replace: Mapping[str, Any] | None = None, **sections: dict) -> Path:
        """:func:`edit_params` of this project's params file."""
        return edit_params(self.params, replace=replace, **sections)

    def write_params(self, name: str, **sections: dict) -> Path:
        """Another params file ``<root>/<name>``: :func:`tiny_params` of this project's recipe and ``sections``."""
        return write_params(self.root, self.recipe, name=name, **sections)


def tiny_project(
    root: Path,
    recipe: str = "stage",
    *,
    images: Mapping[str, tuple[int, int]] | None = None,
    params_text: str | None = None,
    name: str = "params.yaml",
    list_images: bool = False,
    with_src: bool = False,
    replace: Mapping[str, Any] | None = None,
    **sections: dict,
) -> TinyProject:
    """A tiny project in ``root``: ``<root>/<name>`` holding :func:`tiny_params` (``recipe``, ``sections``,
    ``replace``), or ``params_text`` as it is, and the recipe's images (or ``images``: name -> (height,
    width); ``{}`` for none) in ``data.images_dir``, drawn with the recipe's texture.

    ``list_images``: the names go into ``data.images`` (dvc.yaml needs them). A recipe with ``workflow``
    (the ``workflow`` recipe) also copies what a Snakemake/DVC run needs (``workflow/``, ``dvc.yaml``,
    ``.dvcignore``, ``.gitignore``, ``environment.yml``); ``with_src``: and ``src/sindiffusion`` (dvc.yaml's
    code dependencies). The tests never run the pipeline in the repository itself.
    """
    spec = RECIPES[recipe]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if spec.workflow:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
        shutil.copytree(REPO_ROOT / "workflow", root / "workflow", ignore=ignore)
        # .gitignore too: it ignores results/, which decides what git (hence `dvc exp show`) can see
        for file in ("dvc.yaml", ".dvcignore", ".gitignore", "environment.yml"):
            shutil.copy2(REPO_ROOT / file, root / file)
        if with_src:
            shutil.copytree(REPO_ROOT / "src" / "sindiffusion", root / "src" / "sindiffusion", ignore=ignore)
    images = dict(spec.images if images is None else images)
    params = tiny_params(recipe, root, replace=replace, **sections)
    if list_images:
        params["data"]["images"] = sorted(images)
    images_dir = root / params.get("data", {}).get("images_dir", "data/images")
    for seed, image in enumerate(sorted(images)):
        write_image(images_dir / f"{image}.png", images[image], seed, texture=spec.texture)
    path = write_params_file(root / name, params if params_text is None else params_text)
    return TinyProject(root, path, tuple(sorted(images)), recipe)


# ------------------------------------------------------------------------------------------ checkpoints
def make_checkpoint(
    root: Path,
    image: str,
    seed: int = 0,
    size: tuple[int, int] = (32, 32),
    train: dict | None = None,
    **unet_overrides,
) -> Path:
    """``root/results/<image>/train/model.pt``: :data:`TINY_UNET` trained 2 steps on :func:`smooth_image`
    (written as ``root/results/<image>/preprocess/image.png``); ``train`` overrides keys of the ``train`` section."""
    # why: the training stack loads only for the tests that train (start-up time of the others)
    from sindiffusion.artifacts import sha256_file
    from sindiffusion.checkpoint import save_checkpoint
    from sindiffusion.config import DiffusionConfig, TrainConfig
    from sindiffusion.data.io import image_to_tensor, load_image, save_image
    from sindiffusion.models.unet_kind import UNetOptions
    from sindiffusion.training import Trainer

    processed = root / "results" / image / "preprocess" / "image.png"
    save_image(smooth_image(seed, *size)[0], processed)
    x = image_to_tensor(load_image(processed))
    info = {"name": image, "sha256": sha256_file(processed), "size": list(x.shape[1:]), "path": str(processed)}
    unet = dataclasses.replace(TINY_UNET, **unet_overrides)
    section = dict(steps=2, batch_size=2, scale_min=1.0, scale_max=1.0, device="cpu", log_every=1, save_every=100)
    cfg = TrainConfig(**{**section, **(train or {})})
    trainer = Trainer(x, UNetOptions.of(unet), DiffusionConfig(timesteps=100), cfg, info, torch.device("cpu"))
    trainer.run(2, progress=False)
    path = root / "results" / image / "train" / "model.pt"
    save_checkpoint(path, trainer.state_dict())
    return path


# ----------------------------------------------------------------------------------- pipeline, benchmark
def cli(*argv: Any) -> int:
    """``sindiffusion ARGV...`` in-process (paths and numbers as strings); its exit status."""
    return main([str(a) for a in argv])


def make_bench(root: Path) -> Path:
    """A benchmark's inputs under ``root``: images ``1``, ``2``, ``3`` (JPEG, ``noise`` texture) in
    ``images/`` and ``baselines/`` (SinGAN for 1 and 2, GPNN = a copy of 1)."""
    for i in (1, 2, 3):
        write_image(root / "images" / f"{i}.jpg", seed=i, texture="noise")
    write_image(root / "baselines" / "singan" / "1.png", seed=11, texture="noise")
    # another size than the training image's: resized to it
    write_image(root / "baselines" / "singan" / "2.png", (80, 112), seed=12, texture="noise")
    (root / "baselines" / "gpnn").mkdir()
    shutil.copy(root / "images" / "1.jpg", root / "baselines" / "gpnn" / "1.jpg")
    return root


def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> TinyProject:
    """The ``pipeline`` recipe's project with preprocess -> train -> sample -> evaluate run through the CLI
    for both images, once per test session (in ``<basetemp>/tiny_pipeline``), tracking to its
    ``mlflow.db`` and with ``TORCH_HOME`` an empty folder (no pretrained weights: deep metrics are null)."""
    root = tmp_path_factory.getbasetemp() / "tiny_pipeline"
    if (root / "done").is_file():
        return TinyProject(root, root / "params.yaml", tuple(sorted(RECIPES["pipeline"].images)), "pipeline")
    tiny = tiny_project(root, "pipeline")
    tiny.torch_home.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SINDIFFUSION_TRACKING", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("TORCH_HOME", str(tiny.torch_home))
        mp.chdir(root)
        for image in tiny.images:
            for stage in ("preprocess", "train", "sample", "evaluate"):
                extra = ["--no-progress"] if stage in ("train", "sample") else []
                rc = cli(stage, "--params", tiny.params, "--image", image, *extra)
                assert rc == 0, f"tiny pipeline: {stage} {image} exited {rc}"
    (root / "done").write_text("ok\n")
    assert os.listdir(tiny.torch_home) == []  # nothing was downloaded
    return tiny


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny convolutions on a shared 2-core machine: several intra-op threads only spin-wait
    (measured 50x slower under load). Import this fixture into a test module to use it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
