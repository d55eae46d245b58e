"""The Places50-style benchmark and the receptive-field study, at toy scale."""

from __future__ import annotations

import csv
import json

import pytest

from sindiffusion.benchmark import places
from tests.evaluation.tiny_pipeline import cli, write_image, write_params


def test_natural_order_and_limit(tmp_path):
    for n in ("10", "2", "1", "b", "a"):
        write_image(tmp_path / f"{n}.png", seed=0, size=(16, 16))
    assert places.benchmark_images(tmp_path) == ["1", "2", "10", "a", "b"]
    assert places.benchmark_images(tmp_path, limit=2) == ["1", "2"]


def test_benchmark_table_with_baselines(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no pretrained weights
    images = tmp_path / "images"
    for i in (1, 2):
        write_image(images / f"{i}.jpg", seed=i)
    base = tmp_path / "baselines"
    write_image(base / "singan" / "1.png", seed=11)
    write_image(base / "singan" / "2.png", seed=12, size=(80, 112))  # other size: resized to the training image
    write_image(base / "gpnn" / "1.png", seed=1)  # a copy of training image 1 -> copies most
    params = write_params(tmp_path, steps=4, sample_steps=3, tracking=False)
    out = tmp_path / "bench"
    rc = cli("benchmark", "--params", params, "--images-dir", images, "--out", out, "--baselines", base,
             "--limit", "2", "--no-progress")
    assert rc == 0
    rows = list(csv.DictReader((out / "benchmark.csv").open()))
    ours = [r for r in rows if r["kind"] == "image" and r["method"] == places.OURS]
    assert [r["image"] for r in ours] == ["1", "2"]
    assert all(r["sifid_pool1"] == "" and r["lpips_diversity"] == "" for r in ours)  # unavailable, not 0
    assert all(float(r["pixel_diversity"]) > 0 and float(r["patch_swd"]) > 0 for r in ours)
    singan = [r for r in rows if r["kind"] == "image" and r["method"] == "SinGAN"]
    gpnn = [r for r in rows if r["kind"] == "image" and r["method"] == "GPNN"]
    assert len(singan) == 2 and len(gpnn) == 1
    assert all(r["pixel_diversity"] == "" and r["copy_nn_dist"] != "" for r in singan + gpnn)
    means = {r["method"]: r for r in rows if r["kind"] == "mean"}
    assert set(means) == {places.OURS, "SinGAN", "GPNN"}
    assert float(means["GPNN"]["copy_nn_dist"]) < float(means["SinGAN"]["copy_nn_dist"])
    published = {r["method"]: (float(r["sifid_pool1"]), float(r["lpips_diversity"])) for r in rows
                 if r["kind"] == "published"}
    assert published == {"SinGAN": (0.09, 0.266), "ExSinGAN": (0.10, 0.248), "ConSinGAN": (0.06, 0.305),
                         "GPNN": (0.07, 0.256), "SinDiffusion": (0.06, 0.387)}
    md = (out / "benchmark.md").read_text()
    assert "SinDiffusion paper, Table 1" in md and "| GPNN |" in md and "inception_v3_google-0cc3c7c2.pth" in md
    assert (out / "benchmark.png").stat().st_size > 1000
    data = json.loads((out / "benchmark.json").read_text())
    assert "random_weights" not in json.dumps(data)
    assert (out / "1" / "evaluate" / "metrics.json").is_file()


def test_benchmark_bad_folder_is_exit_2(tmp_path):
    assert cli("benchmark", "--images-dir", tmp_path / "missing", "--out", tmp_path / "o") == 2
    (tmp_path / "empty").mkdir()
    assert cli("benchmark", "--images-dir", tmp_path / "empty", "--out", tmp_path / "o") == 2


def test_rf_study_runs_and_plots(tmp_path):
    from sindiffusion.benchmark import rf_study

    img = write_image(tmp_path / "img.png", seed=3, size=(32, 48))
    result = rf_study.run_study(img, out=tmp_path / "rf", max_size=32, steps=3, num_samples=2, sample_steps=2,
                                base_channels=8, batch_size=2, configs=[(1, 1, 2), (2, 1, 2)], device="cpu",
                                progress=False)
    rows = result["rows"]
    assert [r["rf_px"] for r in rows] == [17, 45]
    assert rows[0]["rf_fraction"] < rows[1]["rf_fraction"]
    assert all(isinstance(r[k], float) for r in rows for k in rf_study.METRICS)
    for key in ("csv", "json", "plot", "samples", "markdown"):
        assert (tmp_path / "rf" / result["files"][key].split("/")[-1]).is_file()
    assert rf_study.parse_config("3:1:2") == (3, 1, 2)
    with pytest.raises(ValueError):
        rf_study.parse_config("3-1")
