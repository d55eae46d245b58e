"""The manipulate stage and the one-off application commands, end to end through the CLI.

A tiny UNet (8 channels, 2 levels) trained for 2 steps on a smooth random 32x32 image; sampling
uses 3 DDIM steps. The tests check the mechanics (files, exactness, determinism, errors and
atomicity), not image quality.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sindiffusion.cli import main
from sindiffusion.data.io import save_image
from tests.applications.conftest import tiny_clip_name  # noqa: F401  (fixture: a random tiny open_clip model)
from tests.tiny import make_checkpoint, smooth_image, tiny_project

ALL_EDITS = [
    {"name": "wide", "kind": "outpaint", "right": 12, "top": 4},
    {"name": "hole", "kind": "inpaint", "mask": "inputs/mask32.png", "resample": 1, "resample_until": 0.5},
    {"name": "painted", "kind": "paint", "input": "inputs/paint.png", "factor": 2, "num": 2},
    {"name": "harmonized", "kind": "harmonize", "input": "inputs/composite.png", "mask": "inputs/mask40.png"},
    {"name": "edited", "kind": "edit", "input": "inputs/composite.png", "mask": "inputs/mask40.png", "factor": 2},
    {"name": "sr2", "kind": "super_resolution", "scale": 2},
    {"name": "pano", "kind": "resize", "width": 80},
    {"name": "retarget", "kind": "resize", "scale_w": 1.5, "factor": 4, "strength": 0.8},
]


def _mask(path: Path, h: int, w: int, box: tuple[int, int, int, int] | None) -> None:
    m = torch.zeros(3, h, w) if box is not None else torch.ones(3, h, w)
    if box is not None:
        top, bottom, left, right = box
        m[:, top:bottom, left:right] = 1
    save_image(m * 2 - 1, path)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and much faster on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("manipulate")
    make_checkpoint(root, "img", seed=0)
    make_checkpoint(root, "other", seed=1)
    inputs = root / "inputs"
    save_image(smooth_image(5, 40, 48)[0], inputs / "paint.png")  # another aspect than the 32x32 training image
    save_image(smooth_image(6, 32, 32)[0], inputs / "composite.png")
    _mask(inputs / "mask32.png", 32, 32, (8, 16, 8, 20))
    _mask(inputs / "mask40.png", 32, 32, (10, 20, 10, 24))
    _mask(inputs / "mask_wrong_size.png", 40, 48, (8, 16, 8, 20))
    _mask(inputs / "mask_empty.png", 32, 32, (0, 0, 0, 0))
    _mask(inputs / "mask_full.png", 32, 32, None)
    return root


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _params(root: Path, edits: list[dict], image: str = "img", **kw) -> str:
    return str(tiny_project(root, "manipulate", manipulate={"steps": 3, **kw, "edits": {image: edits}}).params)


def _nothing_new(root: Path, before: set[str]) -> None:
    after = {str(p.relative_to(root)) for p in root.rglob("*")}
    assert after == before, sorted(after - before)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---------------------------------------------------------------------------- the stage
def test_stage_runs_every_kind(in_project: Path, capsys):
    root = in_project
    params = _params(root, ALL_EDITS)
    assert main(["manipulate", "--image", "img", "--params", params, "--no-progress"]) == 0
    out = root / "results" / "img" / "manipulate"
    summary = json.loads((out / "manipulate.json").read_text())
    assert [e["name"] for e in summary["edits"]] == [e["name"] for e in ALL_EDITS]
    sizes = {e["name"]: tuple(e["size"]) for e in summary["edits"]}
    assert sizes["wide"] == (36, 44) and sizes["sr2"] == (64, 64) and sizes["pano"] == (32, 80)
    assert sizes["retarget"] == (32, 48) and sizes["hole"] == (32, 32)
    assert sizes["painted"] == (29, 35)  # a 40x48 painting keeps its aspect at the training image's area
    for e in summary["edits"]:
        folder = out / e["name"]
        assert _pixels(folder / "result.png").shape[:2] == sizes[e["name"]]
        meta = json.loads((folder / "edit.json").read_text())
        assert meta["kind"] == e["kind"] and meta["checkpoint_step"] == 2
        for f in meta["files"]:
            assert (folder / f).is_file(), f
    assert len(list((out / "painted" / "samples").glob("sample_*.png"))) == 2
    assert (out / "painted" / "grid.png").is_file()
    # Known regions are exact: outpaint/inpaint keep the training image, harmonize/edit the composite.
    train = _pixels(root / "results" / "img" / "preprocess" / "image.png")
    assert np.array_equal(_pixels(out / "wide" / "result.png")[4:36, 0:32], train)
    hole = _pixels(out / "hole" / "result.png")
    keep = np.ones((32, 32), bool)
    keep[8:16, 8:20] = False
    assert np.array_equal(hole[keep], train[keep])
    composite = _pixels(root / "inputs" / "composite.png")
    keep = np.ones((32, 32), bool)
    keep[10:20, 10:24] = False
    for name in ("harmonized", "edited"):
        assert np.array_equal(_pixels(out / name / "result.png")[keep], composite[keep]), name
    for e in summary["edits"]:
        if "known_region_max_abs_diff" in e["metrics"]:
            assert e["metrics"]["known_region_max_abs_diff"] == 0.0
    captured = capsys.readouterr()
    assert "img/wide (outpaint, 36x44)" in captured.out
    # --no-progress: plain progress lines in the log (stderr), the last one at 100 %
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("manipulate: ") and "%)" in ln]
    assert len(lines) >= 10 and "(100%)" in lines[-1] and "step/s" in lines[-1] and "ETA" in lines[-1]
    assert not list(out.parent.glob(".manipulate.tmp-*"))


def test_stage_without_edits_writes_an_empty_summary(in_project: Path):
    params = _params(in_project, [], image="nothing")
    assert main(["manipulate", "--image", "img", "--params", params, "--no-progress"]) == 0
    summary = json.loads((in_project / "results" / "img" / "manipulate" / "manipulate.json").read_text())
    assert summary["edits"] == []


def test_stage_is_atomic_on_a_runtime_error(in_project: Path, monkeypatch: pytest.MonkeyPatch):
    root = in_project
    out = root / "results" / "img" / "manipulate"
    out.mkdir(parents=True, exist_ok=True)
    (out / "previous.txt").write_text("old outputs")
    before = _tree(root)
    import sindiffusion.stages.manipulate as stage

    calls = []
    real = stage.run_edit

    def failing(prep, bundle, progress=None):
        calls.append(prep.spec.name)
        if len(calls) == 2:
            raise RuntimeError("simulated failure in the second edit")
        return real(prep, bundle, progress)

    monkeypatch.setattr(stage, "run_edit", failing)
    params = _params(root, [ALL_EDITS[0], ALL_EDITS[6]])
    assert main(["manipulate", "--image", "img", "--params", params, "--no-progress"]) == 1
    assert calls == ["wide", "pano"]
    assert (out / "previous.txt").read_text() == "old outputs"
    _nothing_new(root, before | {"params.yaml"})


# ---------------------------------------------------------------------------- one-off commands
def test_outpaint_command_keeps_the_input_exactly(in_project: Path, tmp_path: Path):
    root = in_project
    ckpt = root / "results" / "img" / "train" / "model.pt"
    out = tmp_path / "wide"
    assert (
        main(
            [
                "outpaint",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--left",
                "8",
                "--bottom",
                "6",
                "--steps",
                "3",
                "--image",
                "img",
                "--params",
                _params(root, []),
                "--no-progress",
            ]
        )
        == 0
    )
    result = _pixels(out / "result.png")
    assert result.shape[:2] == (38, 40)
    train = _pixels(root / "results" / "img" / "preprocess" / "image.png")
    assert np.array_equal(result[0:32, 8:40], train)
    assert not np.array_equal(result[:, :8], np.zeros_like(result[:, :8]))
    mask = _pixels(out / "mask.png")
    assert (mask[0:32, 8:40] == 0).all() and (mask[:, :8] == 255).all()
    meta = json.loads((out / "edit.json").read_text())
    assert meta["kind"] == "outpaint" and meta["metrics"]["known_region_max_abs_diff"] == 0.0


def test_resize_panorama_with_a_deeper_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Any output size, also not a multiple of the net's size multiple (a 4-level net: 8 px)."""
    monkeypatch.chdir(tmp_path)
    ckpt = make_checkpoint(tmp_path, "deep", channel_mult=[1, 2, 2, 2])
    out = tmp_path / "pano"
    params = str(tiny_project(tmp_path, "manipulate", manipulate={"steps": 2}).params)
    assert (
        main(
            [
                "resize",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--height",
                "30",
                "--width",
                "101",
                "--params",
                params,
                "--no-progress",
            ]
        )
        == 0
    )
    assert _pixels(out / "result.png").shape == (30, 101, 3)


def test_text_guidance_command_is_deterministic(in_project: Path, tmp_path: Path, tiny_clip_name):  # noqa: F811
    """A tiny RANDOM open_clip model saved to a local file stands in for real CLIP weights."""
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model(tiny_clip_name)
    weights = tmp_path / "tiny_clip.pt"
    torch.save(clip.state_dict(), weights)
    ckpt = in_project / "results" / "img" / "train" / "model.pt"
    params = _params(in_project, [])

    def run(out: Path, scale: str) -> np.ndarray:
        assert (
            main(
                [
                    "text",
                    "--checkpoint",
                    str(ckpt),
                    "--out",
                    str(out),
                    "--prompt",
                    "a red mountain",
                    "--clip-model",
                    tiny_clip_name,
                    "--clip-pretrained",
                    str(weights),
                    "--guidance-scale",
                    scale,
                    "--cutouts",
                    "2",
                    "--seed",
                    "3",
                    "--steps",
                    "3",
                    "--params",
                    params,
                    "--no-progress",
                ]
            )
            == 0
        )
        return _pixels(out / "result.png")

    a, b, plain = run(tmp_path / "a", "20000"), run(tmp_path / "b", "20000"), run(tmp_path / "c", "0")
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - plain.astype(int)).max() > 0
    meta = json.loads((tmp_path / "a" / "edit.json").read_text())
    assert -1.0 <= meta["metrics"]["clip_score"] <= 1.0
    assert meta["clip"] == {"model": tiny_clip_name, "pretrained": str(weights)}


# ---------------------------------------------------------------------------- bad input
BAD_EDITS = [
    ({"name": "m", "kind": "inpaint", "mask": "inputs/mask_wrong_size.png"}, r"\[0\]\.mask: mask size 40x48"),
    ({"name": "m", "kind": "inpaint", "mask": "inputs/mask_empty.png"}, r"\[0\]\.mask: .*mask is empty"),
    (
        {"name": "m", "kind": "harmonize", "input": "inputs/composite.png", "mask": "inputs/mask_full.png"},
        r"\[0\]\.mask: .*all ones",
    ),
    ({"name": "t", "kind": "text", "prompt": " "}, r"\[0\]\.prompt: the prompt is empty"),
    ({"name": "p", "kind": "paint", "input": "inputs/paint.png", "factor": 16}, r"\[0\]\.factor: low-pass factor N=16"),
    ({"name": "r", "kind": "resize", "width": 40, "factor": 12}, r"\[0\]\.factor: low-pass factor N=12"),
    (
        {"name": "p", "kind": "paint", "input": "inputs/missing.png"},
        r"\[0\]\.input: inputs/missing.png: file not found",
    ),
    ({"name": "o", "kind": "outpaint", "widht": 64}, r"\[0\]\.widht: unknown key .*did you mean 'width'"),
    ({"name": "r", "kind": "resize", "width": 64, "steps": 5000}, r"\[0\]\.steps: sampling steps must be in"),
]


@pytest.mark.parametrize("edit,match", BAD_EDITS, ids=[e[0]["kind"] + "-" + str(i) for i, e in enumerate(BAD_EDITS)])
def test_bad_edits_exit_2_and_write_nothing(in_project: Path, capsys, edit, match):
    root = in_project
    params = _params(root, [ALL_EDITS[6], edit])
    before = _tree(root)
    assert main(["manipulate", "--image", "img", "--params", params, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"params.yaml: manipulate.edits.img" + match.replace(r"\[0\]", r"\[1\]"), err), err
    _nothing_new(root, before)


def test_checkpoint_of_another_image(in_project: Path, tmp_path: Path, capsys):
    root = in_project
    params = _params(root, [ALL_EDITS[6]])
    before = _tree(root)
    other = root / "results" / "other" / "train" / "model.pt"
    assert main(["manipulate", "--image", "img", "--checkpoint", str(other), "--params", params, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "trained on image 'other'" in err and "not 'img'" in err
    _nothing_new(root, before)
    out = tmp_path / "x"
    assert (
        main(
            [
                "resize",
                "--checkpoint",
                str(other),
                "--image",
                "img",
                "--out",
                str(out),
                "--width",
                "40",
                "--params",
                params,
                "--no-progress",
            ]
        )
        == 2
    )
    assert "trained on image 'other'" in capsys.readouterr().err and not out.exists()


def test_text_without_clip_weights_is_a_clear_error(
    in_project: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt = in_project / "results" / "img" / "train" / "model.pt"
    out = tmp_path / "t"
    assert (
        main(
            [
                "text",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--prompt",
                "a mountain",
                "--clip-model",
                "ViT-B-32",
                "--clip-pretrained",
                "openai",
                "--params",
                _params(in_project, []),
                "--set",
                f"manipulate.clip_cache_dir={tmp_path / 'empty-cache'}",
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--clip-pretrained: CLIP weights for model 'ViT-B-32' with pretrained='openai' are not available" in err
    assert "run once with internet" in err and not out.exists()
    assert (
        main(
            [
                "text",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--prompt",
                "a",
                "--clip-pretrained",
                str(tmp_path / "nope.pt"),
                "--params",
                _params(in_project, []),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err


def test_one_off_flag_errors(in_project: Path, tmp_path: Path, capsys):
    ckpt = in_project / "results" / "img" / "train" / "model.pt"
    params = _params(in_project, [])
    out = tmp_path / "o"
    cases = [
        (["inpaint", "--mask", "inputs/mask_wrong_size.png"], "--mask: mask size 40x48"),
        (["text", "--prompt", ""], "--prompt: the prompt is empty"),
        (["super-resolve", "--scale", "1"], "--scale: must be >= 2, got 1"),
        (["paint", "--reference", "inputs/paint.png", "--factor", "40"], "--factor: low-pass factor N=40"),
        (["outpaint"], "--right: outpainting needs"),
    ]
    for argv, message in cases:
        code = main([*argv, "--checkpoint", str(ckpt), "--out", str(out), "--params", params, "--no-progress"])
        assert code == 2, argv
        assert message in capsys.readouterr().err, argv
        assert not out.exists()
    missing = tmp_path / "none.pt"
    assert main(["resize", "--checkpoint", str(missing), "--out", str(out), "--width", "40", "--params", params]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_params_path_in_errors(in_project: Path, capsys):
    params = _params(in_project, [{"name": "x", "kind": "resize"}])
    assert main(["manipulate", "--image", "img", "--params", params, "--no-progress"]) == 2
    assert f"{params}: manipulate.edits.img[0].width: resize needs height/width" in capsys.readouterr().err
    assert os.path.isfile(params)


def test_an_edit_starting_above_train_t_max_is_exit_2_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """A model trained with train.t_max = 0.5: an edit from pure noise is refused naming its kind, an
    SDEdit start above 0.5 T naming its strength, before anything is written; a start below runs."""
    make_checkpoint(tmp_path, "img", train={"t_max": 0.5})
    monkeypatch.chdir(tmp_path)

    def run(edit: dict) -> int:
        return main(["manipulate", "--image", "img", "--params", _params(tmp_path, [edit]), "--no-progress"])

    before = _tree(tmp_path)
    assert run({"name": "wide", "kind": "outpaint", "right": 12}) == 2
    err = capsys.readouterr().err
    assert "manipulate.edits.img[0].kind: this edit starts at pure noise" in err and "train.t_max=0.5" in err
    assert run({"name": "r", "kind": "resize", "scale_w": 1.5, "factor": 4, "strength": 0.8}) == 2
    assert "manipulate.edits.img[0].strength: this edit starts at step 99 of 100" in capsys.readouterr().err
    _nothing_new(tmp_path, before | {"params.yaml"})
    assert run({"name": "r", "kind": "resize", "scale_w": 1.5, "factor": 4, "strength": 0.3}) == 0
    assert (tmp_path / "results/img/manipulate/r/result.png").is_file()
