"""scripts/gpu-check.sh: the CPU smoke run writes the full JSON + sheets; without CUDA it fails in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.tiny import write_image

pytestmark = pytest.mark.e2e  # the end-to-end tier: `python -m pytest -m e2e`

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu-check.sh"


def _run(*args: str, out: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    full.pop("GPU_CHECK_IMAGE", None)
    return subprocess.run(["bash", str(SCRIPT), *args], env=full, capture_output=True, text=True, timeout=timeout)


def test_cpu_smoke_writes_every_part(tmp_path):
    image = write_image(tmp_path / "img" / "scene.png", (40, 48))
    out = tmp_path / "out"
    res = _run("--cpu-smoke", str(image), out=out)
    assert res.returncode == 0, res.stderr + (out / "gpu-check.log").read_text()
    result = json.loads((out / "gpu-check.json").read_text())
    assert result["env"]["mode"] == "cpu-smoke" and result["env"]["cuda_available"] is False
    status = result["status"]
    assert status == {"env": "ok", "speed": "ok", "paper": "ok", "gpu-fast": "ok", "patch": status["patch"]}
    assert status["patch"] == "ok"  # the patch model kind exists: its step runs (64x64 in the smoke run)
    speed = result["parts"]["speed"]["result"]["variants"]
    assert [(v["precision"], v["channels_last"]) for v in speed] == [("fp32", "off"), ("bf16", "on")]
    assert all(v["train_seconds_per_iter"] > 0 and v["step_seconds_batch1"] > 0 for v in speed)
    for cfg in ("paper", "gpu-fast"):
        part = result["parts"][cfg]
        assert part["train"]["stopped_by_time"] and part["train"]["steps"] >= 1
        assert part["sample"]["num_samples"] == 4 and part["sample"]["seconds_per_sample"] > 0
        assert {"patch_swd", "copy_fraction", "copy_nn_dist", "pixel_diversity", "bright_max_dev"} <= set(
            part["metrics"]
        )
        assert (out / "sheets" / f"{cfg}.png").is_file() and part["wall_seconds"] > 0
    assert result["parts"]["gpu-fast"]["settings"]["train"]["loss_weighting"] == "min_snr"
    # gpu-fast alone is sampled again at each init_t (each into its own folder, with its own start), then
    # 2x wide (the second --sweep), and scored
    sweep = result["parts"]["gpu-fast"]["sweep"]
    values = ("0.5", "0.6", "0.7", "0.8")
    assert [e["override"] for e in sweep] == [*(f"sample.init_t={v}" for v in values), "sample.scale_w=2"]
    wide = out / "runs" / "gpu-fast" / "sweep" / "sample.scale_w-2"
    one_x = out / "runs" / "gpu-fast" / "sweep" / "sample.init_t-0.5" / "sample_000.png"
    (h, w), (hw, ww) = (Image.open(f).size[::-1] for f in (one_x, wide / "sample_000.png"))
    assert (hw, ww) == (h, 2 * w)
    assert all(e["metrics"]["num_samples"] == 4 and e["metrics"]["patch_swd"] >= 0 for e in sweep)
    for v in values:
        folder = out / "runs" / "gpu-fast" / "sweep" / f"sample.init_t-{v}"
        assert json.loads((folder / "samples.json").read_text())["init_t"] == float(v)
        assert (folder / "sample_003.png").is_file()
    assert result["parts"]["paper"]["sweep"] == []
    # the tiny UNet overrides go to the UNet parts only; the patch part gets the run-size ones
    unet_only = {"model.base_channels=8", "model.groups=4"}
    assert unet_only <= set(result["parts"]["paper"]["overrides"])
    patch_over = result["parts"]["patch"]["overrides"]
    assert "preprocess.max_size=32" in patch_over and not any(o.startswith("model.") for o in patch_over)
    assert "gpu-check: done in" in res.stderr


def test_without_cuda_it_fails_in_one_line(tmp_path):
    image = write_image(tmp_path / "scene.png")
    res = _run(str(image), out=tmp_path / "out", timeout=120)
    assert res.returncode == 3
    assert res.stderr.strip().splitlines() == [
        "gpu-check: no CUDA device (torch.cuda.is_available() is False); use --cpu-smoke for the CPU test run"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args,message", [(["--fast"], "unknown option --fast"), (["/nonexistent/x.png"], "no training image")]
)
def test_bad_usage(tmp_path, args, message):
    res = _run(*args, out=tmp_path / "out", timeout=60)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and message in res.stderr


def test_patch_part_passes_model_overrides_through(tmp_path):
    """No filtering in part_patch: a model key given to it is applied (and checked) like any override."""
    from sindiffusion.studies.gpu_check import part_patch

    image = write_image(tmp_path / "scene.png")
    part = part_patch(tmp_path / "out", image, 64, str(REPO / "configs" / "patch.yaml"), ["model.patch_size=4"])
    assert part["status"] == "failed" and "model.patch_size" in part["error"]
    assert "model.patch_size=4" in part["overrides"]


@pytest.mark.parametrize("bad", ["sample.init_t", "init_t=0.5", "sample.init_t=0.5,,0.7"])
def test_config_part_refuses_a_malformed_sweep(bad, capsys):
    from sindiffusion.cli.gpu_check import main

    with pytest.raises(SystemExit) as err:
        main(["config", "out", "x", "configs/gpu-fast.yaml", "img.png", "--minutes", "1", "--sweep", bad])
    assert err.value.code == 2 and "expected section.key=value1,value2" in capsys.readouterr().err
