"""``model.kind: patch`` through the real pipeline: preprocess -> train (index) -> sample -> evaluate ->
manipulate with every application, via the CLI, plus its bad inputs (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from sindiffusion.checkpoint import load_checkpoint
from sindiffusion.cli import main
from sindiffusion.diffusion.samplers import build_sampler
from sindiffusion.generate import generate, load_bundle
from tests.stages.test_manipulate import ALL_EDITS, _mask
from tests.tiny import edit_params, smooth_image, tiny_params, tiny_project

PATCH_MODEL = {"kind": "patch", "patch_size": 5, "coarsest_ratio": 1.5}


def _patch_project(root: Path, **model) -> Path:
    replace = {"model": {**PATCH_MODEL, **model}, "tracking": {"enabled": False}}
    return tiny_project(root, replace=replace, sample={"steps": 4, "eta": 0.0}).params


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("patch-kind")
    params = _patch_project(root)
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        for stage in ("preprocess", "train", "sample", "evaluate"):
            assert main([stage, "--image", "img", "--params", str(params), "--no-progress"]) == 0, stage
    finally:
        os.chdir(cwd)
    return root


def test_pipeline_end_to_end(trained: Path):
    res = trained / "results" / "img"
    ckpt = load_checkpoint(res / "train" / "model.pt")
    assert ckpt["config"]["model"]["kind"] == "patch" and ckpt["step"] == 0
    assert ckpt["model"]["image"].shape == (1, 3, 40, 48)  # the model *is* its training image
    assert ckpt["image"]["name"] == "img"
    metrics = json.loads((res / "train" / "metrics.json").read_text())
    assert metrics["model_kind"] == "patch" and metrics["steps"] == 0 and metrics["index_seconds"] >= 0
    assert (res / "train" / "loss.csv").read_text().strip() == "step,loss,it_per_s"
    samples = sorted((res / "samples").glob("sample_*.png"))
    assert len(samples) == 2 and np.asarray(Image.open(samples[0])).shape == (40, 48, 3)
    ev = json.loads((res / "evaluate" / "metrics.json").read_text())
    assert ev["patch_swd"] is not None and 0.0 <= ev["copy_fraction"] <= 1.0


def test_samples_deterministic_per_seed(trained: Path):
    bundle = load_bundle(trained / "results" / "img" / "train" / "model.pt", torch.device("cpu"))
    smp = build_sampler(SimpleNamespace(sampler="ddim", steps=3, eta=1.0), bundle.diffusion)
    a, _ = generate(bundle, 2, (40, 48), smp, seed=3, clip_x0=False)
    b, _ = generate(bundle, 2, (40, 48), smp, seed=3, clip_x0=False)
    c, _ = generate(bundle, 2, (40, 48), smp, seed=4, clip_x0=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_every_application_runs_with_the_patch_model(trained: Path, monkeypatch: pytest.MonkeyPatch):
    root = trained
    monkeypatch.chdir(root)
    inputs = root / "inputs"
    from sindiffusion.data.io import save_image

    save_image(smooth_image(5, 40, 48)[0], inputs / "paint.png")
    save_image(smooth_image(6, 40, 48)[0], inputs / "composite.png")
    _mask(inputs / "mask32.png", 40, 48, (8, 16, 8, 20))
    _mask(inputs / "mask40.png", 40, 48, (10, 20, 10, 24))
    manipulate = tiny_params("manipulate", root, manipulate={"steps": 3, "edits": {"img": ALL_EDITS}})["manipulate"]
    edit_params(root / "params.yaml", replace={"manipulate": manipulate})
    assert main(["manipulate", "--image", "img", "--params", "params.yaml", "--no-progress"]) == 0
    out = root / "results" / "img" / "manipulate"
    summary = json.loads((out / "manipulate.json").read_text())
    assert [e["name"] for e in summary["edits"]] == [e["name"] for e in ALL_EDITS]
    train = np.asarray(Image.open(root / "results" / "img" / "preprocess" / "image.png").convert("RGB"))
    wide = np.asarray(Image.open(out / "wide" / "result.png").convert("RGB"))
    assert np.array_equal(wide[4:44, 0:48], train)  # outpainting keeps the known region exactly


@pytest.mark.parametrize(
    "model, message",
    [
        ({"kind": "nope"}, "model.kind: unknown model kind 'nope'"),
        ({**PATCH_MODEL, "patch_size": 4}, "model.patch_size: must be an odd integer"),
        ({**PATCH_MODEL, "padding": "circular"}, "model.padding: 'circular' is not allowed"),
        ({**PATCH_MODEL, "chunk_size": 0}, "model.chunk_size: must be >= 1"),
        ({**PATCH_MODEL, "preset": "paper"}, "model.preset: unknown key"),
        ({**PATCH_MODEL, "scales": 4, "patch_size": 7}, "model.patch_size: patch side 7 is larger than scale"),
    ],
)
def test_bad_patch_model_section_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys, model, message):
    params = _patch_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    edit_params(params, replace={"model": model})
    before = sorted(p for p in tmp_path.rglob("*"))
    code = 0
    for stage in ("preprocess", "train"):
        code = main([stage, "--image", "img", "--params", str(params), "--no-progress"])
        if code:
            break
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results" / "img" / "train").exists()
    if "larger than scale" not in message:  # config errors stop before preprocess writes anything
        assert sorted(p for p in tmp_path.rglob("*")) == before


def test_shipped_patch_config_loads():
    """``--params configs/patch.yaml`` is the switch: every section valid, the model training-free."""
    from sindiffusion.config import load_params

    repo = Path(__file__).resolve().parents[2]
    params = load_params(repo / "configs" / "patch.yaml")
    assert params.section("model").kind == "patch" and params.section("sample").steps <= 25


def test_layout_start_keeps_the_layout_and_is_deterministic(trained: Path, monkeypatch: pytest.MonkeyPatch):
    """``sample.init: layout``: a low init_t gives samples close to the image's low-pass; higher is freer."""
    from sindiffusion.config import load_params
    from sindiffusion.stages import sample

    monkeypatch.chdir(trained)

    def draw(init_t: float, out: str) -> np.ndarray:
        params = load_params(
            "params.yaml", ["sample.init=layout", f"sample.init_t={init_t}", "sample.init_factor=4", "sample.steps=5"]
        )
        sample.run(params, "img", out_dir=trained / out, progress=False, force=True)
        return np.stack(
            [np.asarray(Image.open(p), dtype=np.float32) / 255 for p in sorted((trained / out).glob("sample_*.png"))]
        )

    train = np.asarray(Image.open(trained / "results" / "img" / "preprocess" / "image.png"), dtype=np.float32) / 255
    low, high = draw(0.1, "low"), draw(0.95, "high")
    assert np.abs(low - train).mean() < np.abs(high - train).mean()
    assert np.array_equal(low, draw(0.1, "low2"))


def _draw(trained: Path, out: str, overrides: list[str]) -> np.ndarray:
    from sindiffusion.config import load_params
    from sindiffusion.stages import sample

    params = load_params("params.yaml", ["sample.steps=5", *overrides])
    meta = sample.run(params, "img", out_dir=trained / out, progress=False, force=True)
    assert meta["init"] == overrides[0].split("=")[1]
    return np.stack([np.asarray(Image.open(p), dtype=np.float32) for p in sorted((trained / out).glob("sample_*.png"))])


def test_native_and_tile_starts_draw_any_size_and_auto_picks_layout_only_at_the_training_size(
    trained: Path, monkeypatch: pytest.MonkeyPatch
):
    """``sample.init: native`` and ``tile`` run at 2x wide and 2x tall; ``auto`` is ``layout`` at the
    training size (bit-identical samples) and ``tile`` at any other size."""
    monkeypatch.chdir(trained)
    wide = ["sample.scale_w=2", "sample.layout_side=8", "sample.layout_patch=5"]
    native_wide = _draw(trained, "native-wide", ["sample.init=native", *wide])
    assert native_wide.shape[1:3] == (40, 96)
    tall = _draw(trained, "native-tall", ["sample.init=native", "sample.scale_h=2", "sample.layout_side=8"])
    assert tall.shape[1:3] == (80, 48)
    tile_wide = _draw(trained, "tile-wide", ["sample.init=tile", *wide])
    assert tile_wide.shape[1:3] == (40, 96)
    assert not np.array_equal(tile_wide, native_wide)
    assert _draw(trained, "tile-tall", ["sample.init=tile", "sample.scale_h=2"]).shape[1:3] == (80, 48)
    assert np.array_equal(_draw(trained, "auto-wide", ["sample.init=auto", *wide]), tile_wide)
    assert np.array_equal(
        _draw(trained, "auto-1x", ["sample.init=auto", "sample.scale_w=1"]),
        _draw(trained, "layout-1x", ["sample.init=layout", "sample.scale_w=1"]),
    )


@pytest.mark.parametrize(
    "override,message",
    [
        ("sample.layout_patch=4", "sample.layout_patch: must be an odd integer"),
        ("sample.layout_side=5", "sample.layout_side: 5 is smaller than layout_patch (7)"),
        ("sample.init=stretched", "sample.init"),
        ("sample.match_levels=[2,0]", "sample.match_levels"),
        ("sample.match_levels=[]", "sample.match_levels"),
        ("sample.match_steps=-3", "sample.match_steps"),
        ("sample.tile_rows=seams", "sample.tile_rows"),
    ],
)
def test_a_bad_native_start_setting_exits_2_before_anything(trained: Path, monkeypatch, capsys, override, message):
    monkeypatch.chdir(trained)
    out = trained / "bad-start"
    rc = main(["sample", "--image", "img", "--no-progress", "--out", str(out), "--set", override])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_nearest_finish_gives_sharper_samples(trained: Path, monkeypatch: pytest.MonkeyPatch):
    """``sample.finish: nearest``: the same samples, every patch replaced by its nearest training patch:
    higher ``sharpness`` than the denoiser's last output (measured on the tiny image)."""
    from sindiffusion.evaluation.structure import sharpness

    monkeypatch.chdir(trained)
    train = torch.from_numpy(
        np.asarray(Image.open(trained / "results" / "img" / "preprocess" / "image.png"), dtype=np.float32) / 255
    ).permute(2, 0, 1)
    scores = {}
    for finish in ("none", "nearest"):
        samples = _draw(trained, f"finish-{finish}", ["sample.init=layout", f"sample.finish={finish}"])
        scores[finish] = sharpness(train, torch.from_numpy(samples / 255).permute(0, 3, 1, 2))
    assert scores["nearest"] > scores["none"] + 0.05, scores


def test_finish_coherence_reaches_the_finish(trained: Path, monkeypatch: pytest.MonkeyPatch):
    """``sample.finish_coherence``: the same samples with their finish's sources made coherent: with
    a 1 px vote, crisper than without (which averages unrelated neighbours), and recorded."""
    from sindiffusion.evaluation.structure import sharpness

    monkeypatch.chdir(trained)
    train = torch.from_numpy(
        np.asarray(Image.open(trained / "results" / "img" / "preprocess" / "image.png"), dtype=np.float32) / 255
    ).permute(2, 0, 1)
    scores = {}
    for weight in (0, 0.5):
        out = f"coherence-{weight}"
        drawn = _draw(
            trained,
            out,
            [
                "sample.init=layout",
                "sample.finish=nearest",
                "sample.finish_window=1.0",
                f"sample.finish_coherence={weight}",
            ],
        )
        scores[weight] = sharpness(train, torch.from_numpy(drawn / 255).permute(0, 3, 1, 2))
        assert json.loads((trained / out / "samples.json").read_text())["finish_coherence"] == weight
    assert scores[0.5] > scores[0] + 0.02, scores


def test_patch_matching_moves_the_samples_towards_the_image_patches(trained: Path, monkeypatch: pytest.MonkeyPatch):
    """``sample.match_steps``: the same samples, then GPDM's matching: a lower patch SWD against the
    tiny image (5 px patches and directions of their own, not the matcher's), at 2x wide too."""
    from sindiffusion.evaluation.patches import patch_swd

    monkeypatch.chdir(trained)
    train = torch.from_numpy(
        np.asarray(Image.open(trained / "results" / "img" / "preprocess" / "image.png"), dtype=np.float32) / 255
    ).permute(2, 0, 1)
    for size in ("sample.scale_w=1", "sample.scale_w=2"):
        swd = {}
        for steps in (0, 20):
            drawn = _draw(
                trained, f"match-{steps}-{size[-1]}", ["sample.init=auto", size, f"sample.match_steps={steps}"]
            )
            swd[steps] = patch_swd(train, torch.from_numpy(drawn / 255).permute(0, 3, 1, 2), patch_size=5, seed=1000)
        assert swd[20] < swd[0], (size, swd)


def test_smooth_tile_rows_reach_the_start_and_the_matching(trained: Path, monkeypatch: pytest.MonkeyPatch):
    """``sample.tile_rows: smooth`` at 2x tall: the tile start lays out the smooth rows and the
    matching gets their proportions (``row_mass``, the canvas's row heights); at 2x wide, where no
    row is repeated, the samples are those of ``stretch`` bit for bit."""
    from sindiffusion.applications.patch_matching import PatchMatchFinish
    from sindiffusion.applications.tiled_layout import row_heights

    monkeypatch.chdir(trained)
    masses: list = []
    original = PatchMatchFinish.__init__

    def spy(self, image, **options):
        masses.append(options.get("row_mass"))
        original(self, image, **options)

    monkeypatch.setattr(PatchMatchFinish, "__init__", spy)
    tall = ["sample.scale_h=2", "sample.match_steps=3"]
    smooth = _draw(trained, "rows-smooth", ["sample.init=tile", *tall, "sample.tile_rows=smooth"])
    stretch = _draw(trained, "rows-stretch", ["sample.init=tile", *tall, "sample.tile_rows=stretch"])
    assert smooth.shape[1:3] == (80, 48) and not np.array_equal(smooth, stretch)
    image = torch.from_numpy(
        np.asarray(Image.open(trained / "results" / "img" / "preprocess" / "image.png"), dtype=np.float32) / 127.5 - 1
    ).permute(2, 0, 1)[None]
    assert masses[1] is None and torch.allclose(masses[0], row_heights(image, 80), atol=1e-4)
    wide = ["sample.scale_w=2", "sample.match_steps=3"]
    assert np.array_equal(
        _draw(trained, "wide-smooth", ["sample.init=tile", *wide, "sample.tile_rows=smooth"]),
        _draw(trained, "wide-stretch", ["sample.init=tile", *wide]),
    )


def test_patch_model_with_v_parameterization_is_exit_2_naming_the_keys(tmp_path, monkeypatch, capsys):
    """The closed form returns eps: a checkpoint recording ``v`` would be sampled as if it predicted v."""
    params = _patch_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["preprocess", "--image", "img", "--params", str(params), "--no-progress"]) == 0
    rc = main(["train", "--image", "img", "--no-progress", "--set", "diffusion.parameterization=v"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "diffusion.parameterization" in err and "model.kind=patch" in err
    assert not (tmp_path / "results" / "img" / "train" / "model.pt").exists()
