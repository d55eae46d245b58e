"""`sindiffusion time-curve` at toy scale: fractional-minute snapshots of one training per image,
weight-free metrics per snapshot, CSV + JSON + plot + sheets + MLflow. Numbers mean nothing here."""

from __future__ import annotations

import csv
import json

import pytest

from sindiffusion.studies.time_curve import parse_minutes
from tests.tiny import (
    cli,
    one_torch_thread,  # noqa: F401
    write_image,
    write_params,
)

pytestmark = pytest.mark.e2e  # the end-to-end tier: `python -m pytest -m e2e`


def test_snapshots_metrics_csv_plot_and_mlflow(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    for i in (1, 2, 3):
        write_image(tmp_path / "images" / f"{i}.png", seed=i, texture="noise")
    params = write_params(
        tmp_path, "pipeline", train={"steps": 100000}, sample={"steps": 3}, tracking={"enabled": True}
    )
    out = tmp_path / "curve"
    assert (
        cli(
            "time-curve",
            "--images-dir",
            tmp_path / "images",
            "--images",
            "1,3",
            "--minutes",
            "0.05,0.025",
            "--num",
            "2",
            "--params",
            params,
            "--out",
            out,
            "--no-progress",
        )
        == 0
    )
    rows = list(csv.DictReader((out / "time_curve.csv").open()))
    points = [(r["image"], r["label"]) for r in rows]
    assert points == [
        ("1", "0.025 min"),
        ("1", "0.05 min"),
        ("3", "0.025 min"),
        ("3", "0.05 min"),
        ("mean of 2", "0.025 min"),
        ("mean of 2", "0.05 min"),
    ]
    for r in rows[:4]:
        assert float(r["patch_swd"]) > 0 and 0 <= float(r["copy_fraction"]) <= 1 and float(r["pixel_diversity"]) > 0
        assert int(r["steps"]) > 0 and float(r["train_seconds"]) >= float(r["minutes"]) * 60
    # image 1's first step also pays torch's warm-up (seconds): compare the marks on image 3
    assert int(rows[0]["steps"]) <= int(rows[1]["steps"]) and int(rows[2]["steps"]) < int(rows[3]["steps"])
    # the training stopped at the last mark (train.max_minutes = 0.05), not at train.steps
    metrics = json.loads((out / "runs/1/train/metrics.json").read_text())
    assert metrics["stopped_by_time"] and metrics["steps"] < 100000
    result = json.loads((out / "time_curve.json").read_text())
    assert result["settings"]["minutes"] == [0.025, 0.05] and result["notes"] == []
    # the sheet's samples are files too (for time-curve-compare), 2 per point (--num 2)
    assert result["rows"][0]["samples"] == ["samples/1/0.025min/sample_000.png", "samples/1/0.025min/sample_001.png"]
    assert all((out / f).is_file() for r in result["rows"] for f in r["samples"])
    assert (out / "time_curve.png").stat().st_size > 10000 and (out / "sheets/1.png").is_file()
    assert "time-curve: 4 points of 2 images" in capsys.readouterr().out
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["tiny-time-curve"], output_format="list")
    curve = [r for r in runs if "mean.patch_swd" in r.data.metrics]
    assert len(curve) == 1 and "1.patch_swd" in curve[0].data.metrics
    history = mlflow.MlflowClient().get_metric_history(curve[0].info.run_id, "1.patch_swd")
    assert len(history) == 2


def test_training_that_ends_before_the_marks_gives_a_final_point(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "images" / "a.png", seed=1, texture="noise")
    params = write_params(tmp_path, "pipeline", train={"steps": 3}, sample={"steps": 2}, tracking={"enabled": False})
    out = tmp_path / "curve"
    assert (
        cli(
            "time-curve",
            "--images-dir",
            tmp_path / "images",
            "--images",
            "a",
            "--minutes",
            "5",
            "--num",
            "2",
            "--params",
            params,
            "--out",
            out,
            "--no-progress",
        )
        == 0
    )
    result = json.loads((out / "time_curve.json").read_text())
    assert [r["label"] for r in result["rows"]] == ["final"] and result["rows"][0]["steps"] == 3
    assert "before the marks 5 min" in result["notes"][0]

    # --rescore: the same model sampled again with another sample section, nothing retrained
    model = out / "runs/a/train/model.pt"
    trained = model.stat().st_mtime_ns
    args = ["time-curve", "--images-dir", tmp_path / "images", "--images", "a", "--minutes", "5"]
    args += ["--num", "3", "--params", params, "--out", out, "--no-progress", "--rescore"]
    assert cli(*args, "--set", "sample.seed=7") == 0
    again = json.loads((out / "time_curve.json").read_text())
    assert model.stat().st_mtime_ns == trained and again["settings"]["rescore"] is True
    assert [r["label"] for r in again["rows"]] == ["final"] and again["rows"][0]["steps"] == 3
    assert again["settings"]["sample"]["seed"] == 7 and again["settings"]["sample"]["num_samples"] == 3
    assert again["rows"][0]["pixel_diversity"] != result["rows"][0]["pixel_diversity"]


def test_rescore_without_an_earlier_run_is_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "images" / "a.png", seed=1, texture="noise")
    params = write_params(tmp_path, "pipeline", train={"steps": 3}, sample={"steps": 2}, tracking={"enabled": False})
    out = tmp_path / "curve"
    args = ["time-curve", "--images-dir", tmp_path / "images", "--images", "a", "--params", params]
    assert cli(*args, "--out", out, "--no-progress", "--rescore") == 2
    err = capsys.readouterr().err
    assert "--rescore needs an earlier time-curve run of image 'a'" in err and str(out / "runs" / "a") in err
    assert not (out / "time_curve.csv").exists() and not (out / "runs/a/train").exists()


def test_a_snapshot_is_sampled_as_sindiffusion_sample_samples_it(tmp_path, monkeypatch):
    """Regression: the curve drew every snapshot from pure noise even with ``sample.init: layout``
    (the start was built inside the sample stage only), so it scored another sampler than the one
    ``sindiffusion sample`` and the benchmark use (Places50 image 1: patch SWD 0.25 vs 0.019)."""
    import torch

    from sindiffusion.config import load_params
    from sindiffusion.stages import preprocess, sample, train
    from sindiffusion.stages.common import image_paths
    from sindiffusion.stages.evaluate import load_unit
    from sindiffusion.studies.time_curve import score_point

    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "images" / "a.png", seed=1, texture="noise")
    params = load_params(
        write_params(tmp_path, "pipeline", train={"steps": 3}, sample={"steps": 4}, tracking={"enabled": False}),
        ["sample.init=layout", "sample.init_t=0.3"],
    )
    preprocess.run(params, "a")
    train.run(params, "a", progress=False)
    paths = image_paths(params, "a")
    real = load_unit(paths.processed)
    row, fakes = score_point(params, paths.checkpoint, paths.processed, real, torch.device("cpu"), False)
    sample.run(params, "a", progress=False)
    staged = torch.cat([load_unit(paths.samples / f"sample_{i:03d}.png") for i in range(2)])
    assert fakes.shape == staged.shape == (2, 3, *real.shape[-2:])
    assert (fakes - staged).abs().max() <= 1.01 / 255  # the stage's PNGs are rounded to 8 bits
    assert row["bright_max_dev"] < 0.1  # started from the image at 0.3 T: its brightness is kept


@pytest.mark.parametrize("text", ["", "1,-2", "1,1", "x"])
def test_bad_minutes(text):
    with pytest.raises(ValueError, match="--minutes"):
        parse_minutes(text)


def test_bad_input_exits_2(tmp_path, capsys):
    write_image(tmp_path / "images" / "a.png", seed=1, texture="noise")
    params = write_params(tmp_path, "pipeline", tracking={"enabled": False})
    assert (
        cli(
            "time-curve",
            "--images-dir",
            tmp_path / "images",
            "--images",
            "b",
            "--params",
            params,
            "--out",
            tmp_path / "o",
        )
        == 2
    )
    assert "'b' is not an image of" in capsys.readouterr().err
    assert (
        cli(
            "time-curve",
            "--images-dir",
            tmp_path / "images",
            "--images",
            "a",
            "--params",
            params,
            "--minutes",
            "0",
            "--out",
            tmp_path / "o",
        )
        == 2
    )
    assert (
        cli(
            "time-curve",
            "--images-dir",
            tmp_path / "images",
            "--images",
            "a",
            "--params",
            params,
            "--set",
            "train.max_minutes=-1",
            "--out",
            tmp_path / "o",
        )
        == 2
    )
    assert "train.max_minutes: must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _curve_args(tmp_path, params, images, *extra):
    return ["time-curve", "--images-dir", tmp_path / "images", "--images", images, "--minutes", "5"] + [
        "--num",
        "2",
        "--params",
        params,
        "--out",
        tmp_path / "curve",
        "--no-progress",
        *extra,
    ]


@pytest.fixture
def counted_scoring(monkeypatch):
    """Counts the points time-curve samples and scores (each call of ``score_point``)."""
    from sindiffusion.studies import time_curve

    calls = []
    real = time_curve.score_point

    def counting(params, bundle_path, *args, **kwargs):
        calls.append(bundle_path)
        return real(params, bundle_path, *args, **kwargs)

    monkeypatch.setattr(time_curve, "score_point", counting)
    return calls


def test_a_rerun_keeps_the_images_already_done(tmp_path, monkeypatch, counted_scoring):
    """A long curve can be split over sittings: ``--images 1`` today, ``--images 1-3`` tomorrow
    trains and samples only images 2 and 3, and the tables cover all three."""
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        write_image(tmp_path / "images" / f"{name}.png", seed=ord(name), texture="noise")
    params = write_params(tmp_path, "pipeline", train={"steps": 3}, sample={"steps": 2}, tracking={"enabled": False})
    assert cli(*_curve_args(tmp_path, params, "a")) == 0
    first = json.loads((tmp_path / "curve/time_curve.json").read_text())["rows"]
    model = tmp_path / "curve/runs/a/train/model.pt"
    trained = model.stat().st_mtime_ns
    counted_scoring.clear()

    assert cli(*_curve_args(tmp_path, params, "a,b")) == 0
    result = json.loads((tmp_path / "curve/time_curve.json").read_text())
    assert model.stat().st_mtime_ns == trained  # image a was neither trained ...
    assert [p.parent.parent.name for p in counted_scoring] == ["b"]  # ... nor sampled again
    assert result["rows"][0] == first[0] and [r["image"] for r in result["rows"]] == ["a", "b"]
    assert [r["image"] for r in csv.DictReader((tmp_path / "curve/time_curve.csv").open())][-1] == "mean of 2"
    assert set(result["sheets"]) == {"a", "b"} and (tmp_path / "curve/sheets/a.png").is_file()


def test_an_image_stopped_after_training_is_scored_without_training_again(tmp_path, monkeypatch, counted_scoring):
    """Preempted while sampling: the rerun keeps the finished training and only samples."""
    from sindiffusion.studies import time_curve

    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "images" / "a.png", seed=1, texture="noise")
    params = write_params(tmp_path, "pipeline", train={"steps": 3}, sample={"steps": 2}, tracking={"enabled": False})

    def preempted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(time_curve, "score_point", preempted)
        assert cli(*_curve_args(tmp_path, params, "a")) == 130  # Ctrl-C / a second SIGINT
    model = tmp_path / "curve/runs/a/train/model.pt"
    trained = model.stat().st_mtime_ns
    assert not (tmp_path / "curve/time_curve.csv").exists()

    assert cli(*_curve_args(tmp_path, params, "a")) == 0
    assert model.stat().st_mtime_ns == trained and len(counted_scoring) == 1
    assert [r["label"] for r in json.loads((tmp_path / "curve/time_curve.json").read_text())["rows"]] == ["final"]


def test_other_settings_are_not_reused(tmp_path, monkeypatch, counted_scoring):
    """Another sample section: sampled again on the same model. Another train section: trained again."""
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "images" / "a.png", seed=1, texture="noise")
    params = write_params(tmp_path, "pipeline", train={"steps": 3}, sample={"steps": 2}, tracking={"enabled": False})
    assert cli(*_curve_args(tmp_path, params, "a")) == 0
    first = json.loads((tmp_path / "curve/time_curve.json").read_text())["rows"][0]
    model = tmp_path / "curve/runs/a/train/model.pt"
    trained = model.stat().st_mtime_ns

    assert cli(*_curve_args(tmp_path, params, "a", "--set", "sample.seed=7")) == 0
    again = json.loads((tmp_path / "curve/time_curve.json").read_text())["rows"][0]
    assert model.stat().st_mtime_ns == trained and len(counted_scoring) == 2
    assert again["pixel_diversity"] != first["pixel_diversity"]

    assert cli(*_curve_args(tmp_path, params, "a", "--set", "train.seed=3")) == 0
    assert model.stat().st_mtime_ns != trained and len(counted_scoring) == 3


def test_an_image_of_the_same_name_from_another_file_is_trained_again(tmp_path, monkeypatch, counted_scoring):
    """The record holds the image file's sha256: the same name from another --images-dir (or the image
    edited in place) is another image, trained again, never reported with the old one's points."""
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "images" / "a.png", seed=1, texture="noise")
    params = write_params(tmp_path, "pipeline", train={"steps": 3}, sample={"steps": 2}, tracking={"enabled": False})
    assert cli(*_curve_args(tmp_path, params, "a")) == 0
    record = json.loads((tmp_path / "curve/done/a.json").read_text())
    assert len(record["source_sha256"]) == 64
    model = tmp_path / "curve/runs/a/train/model.pt"
    trained = model.stat().st_mtime_ns

    write_image(tmp_path / "images" / "a.png", seed=2, texture="noise")  # same name, other pixels
    assert cli(*_curve_args(tmp_path, params, "a")) == 0
    assert model.stat().st_mtime_ns != trained and len(counted_scoring) == 2
    assert json.loads((tmp_path / "curve/done/a.json").read_text())["source_sha256"] != record["source_sha256"]
