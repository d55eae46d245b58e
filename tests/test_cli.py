"""The command line: exit codes, messages naming the culprit, no output on bad input."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from sindiffusion import cli
from sindiffusion.cli import main
from tests.data.test_io import bad_inputs
from tests.tiny import one_torch_thread, tiny_params, tiny_project, write_image, write_params_file  # noqa: F401


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path)
    return tmp_path


def _outputs(root: Path) -> list[str]:
    results = root / "results"
    return sorted(str(p.relative_to(root)) for p in results.rglob("*")) if results.exists() else []


def test_preprocess_writes_png_and_json(proj, capsys):
    write_image(proj / "data" / "images" / "wide.png", (37, 90))
    assert main(["preprocess", "--image", "wide"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wide: [37, 90] -> [")
    img = Image.open(proj / "results/wide/preprocess/image.png")
    meta = json.loads((proj / "results/wide/preprocess/image.json").read_text())
    assert img.mode == "RGB" and list(img.size[::-1]) == meta["processed_size"]
    assert meta["original_size"] == [37, 90] and meta["processed_size"] == [20, 48]  # 37 * 48 / 90 = 19.7
    assert meta["source"].endswith("wide.png")
    assert meta["receptive_field_px"] > 0 and meta["receptive_field_fraction"] == pytest.approx(
        meta["receptive_field_px"] / 48, abs=1e-3
    )


@pytest.mark.parametrize("case", ["missing", "text", "empty", "truncated_png", "truncated_jpg", "bomb"])
def test_preprocess_bad_source(proj, capsys, case):
    path, word = bad_inputs(proj / "data")[case]
    assert main(["preprocess", "--image", "bad", "--source", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sindiffusion preprocess: error: ") and str(path) in err and word in err
    assert _outputs(proj) == []


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_preprocess_bad_file_in_images_dir(proj, capsys, suffix):
    bad = proj / "data" / "images" / f"broken{suffix}"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10 if suffix == ".png" else b"\xff\xd8\xff\xe0 junk")
    assert main(["preprocess", "--image", "broken"]) == 2
    assert f"data/images/broken{suffix}" in capsys.readouterr().err
    assert _outputs(proj) == []


def test_preprocess_too_small(proj, capsys):
    write_image(proj / "data" / "images" / "small.png", (7, 30))
    assert main(["preprocess", "--image", "small"]) == 2
    err = capsys.readouterr().err
    assert "data/images/small.png" in err and "too small" in err and "8x8" in err  # 2 levels: 4 * 2 px
    assert _outputs(proj) == []


def test_preprocess_pixel_limit_and_allow_large(proj, capsys):
    assert main(["preprocess", "--image", "img", "--set", "preprocess.max_pixels=1000"]) == 2
    err = capsys.readouterr().err
    assert "img.png" in err and "1920 pixels exceeds the limit of 1000" in err and "allow_large" in err
    assert _outputs(proj) == []
    assert (
        main(
            [
                "preprocess",
                "--image",
                "img",
                "--set",
                "preprocess.max_pixels=1000",
                "--set",
                "preprocess.allow_large=true",
            ]
        )
        == 0
    )
    assert (proj / "results/img/preprocess/image.png").is_file()


def test_preprocess_failure_keeps_previous_output(proj, capsys):
    assert main(["preprocess", "--image", "img"]) == 0
    before = (proj / "results/img/preprocess/image.png").read_bytes()
    (proj / "data/images/img.png").write_text("overwritten by mistake")
    assert main(["preprocess", "--image", "img"]) == 2
    assert (proj / "results/img/preprocess/image.png").read_bytes() == before
    assert not [p for p in (proj / "results/img/preprocess").iterdir() if p.name.startswith(".")]


def test_unknown_image_lists_available(proj, capsys):
    assert main(["preprocess", "--image", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "images available: img" in err


def test_config_errors_exit_2(proj, capsys):
    assert main(["preprocess", "--image", "img", "--set", "preprocess.max_sise=10"]) == 2
    err = capsys.readouterr().err
    assert "preprocess.max_sise" in err and "'max_size'" in err
    assert main(["preprocess", "--image", "img", "--params", "missing.yaml"]) == 2
    assert "missing.yaml: params file not found" in capsys.readouterr().err
    assert main(["preprocess", "--image", "img", "--set", "model.decoder_blocks=1"]) == 2
    assert "decoder_blocks (1) must be >= encoder_blocks + 1" in capsys.readouterr().err
    assert _outputs(proj) == []


def test_params_file_option(proj, capsys):
    other = write_params_file(proj / "other.yaml", tiny_params(data={"results_dir": "elsewhere"}))
    assert main(["preprocess", "--image", "img", "--params", str(other)]) == 0
    assert (proj / "elsewhere/img/preprocess/image.png").is_file() and _outputs(proj) == []


def test_train_without_preprocess(proj, capsys):
    assert main(["train", "--image", "img", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "results/img/preprocess/image.png" in err


def test_sample_without_checkpoint(proj, capsys):
    assert main(["sample", "--image", "img", "--no-progress"]) == 2
    assert "results/img/train/model.pt: checkpoint not found" in capsys.readouterr().err


def test_runtime_failure_exit_1(proj, capsys, monkeypatch):
    from sindiffusion.stages import preprocess

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(preprocess, "run", boom)
    monkeypatch.delenv("SINDIFFUSION_DEBUG", raising=False)
    assert main(["preprocess", "--image", "img"]) == 1
    err = capsys.readouterr().err
    assert "failed: RuntimeError: kaboom" in err and "SINDIFFUSION_DEBUG" in err
    monkeypatch.setenv("SINDIFFUSION_DEBUG", "1")
    assert main(["preprocess", "--image", "img"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_images_command(proj, capsys):
    write_image(proj / "data/images/b.jpg")
    (proj / "data/images/notes.txt").write_text("x")
    assert main(["images"]) == 0
    assert capsys.readouterr().out.split() == ["b", "img"]
    assert main(["images", "--set", "data.images=[img]"]) == 0
    assert capsys.readouterr().out.split() == ["img"]


def test_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["preprocess"])  # --image is required
    assert info.value.code == 2 and "--image" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["sample", "--image", "x", "--sampler", "euler"])
    assert info.value.code == 2


def test_main_can_run_many_times_with_extensions(proj, capsys, monkeypatch):
    # A subsystem CLI module registering a subcommand: main() must not register it twice.
    name = "sindiffusion.cli.evaluation"
    fake = types.ModuleType(name)

    def register(sub, add_common):
        p = sub.add_parser("fake-stage")
        add_common(p)
        p.set_defaults(func=lambda args: print("fake ran"))

    fake.register = register
    monkeypatch.setitem(sys.modules, name, fake)
    monkeypatch.setattr(cli, "_EXTENSIONS", [])
    for _ in range(3):
        assert main(["fake-stage", "--image", "img"]) == 0
    assert capsys.readouterr().out.count("fake ran") == 3
