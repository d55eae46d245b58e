"""`sindiffusion time-curve-compare` at toy scale: two time-curve runs joined on the images and
marks they share, with the published baselines; the errors name the run or pick and write nothing.
Numbers mean nothing here (tiny random networks, a few training steps)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from sindiffusion.benchmark.sheets import PAD
from sindiffusion.studies.curve_compare import parse_curve_pick
from tests.tiny import (
    cli,
    make_bench,
    one_torch_thread,  # noqa: F401
    write_params,
)

pytestmark = pytest.mark.e2e  # the end-to-end tier: `python -m pytest -m e2e`


@pytest.fixture(scope="module")
def curves(tmp_path_factory) -> Path:
    """Once per module, in a :func:`tests.tiny.make_bench` folder: time-curve ``A`` on images 1-2 (3 steps) and
    ``B`` on images 2-3 (2 steps); each ends by its step count, so its one point is ``final``."""
    root = make_bench(tmp_path_factory.mktemp("curves"))
    params = write_params(root, "pipeline", train={"steps": 3}, sample={"steps": 2}, tracking={"enabled": False})
    common = ["--params", params, "--images-dir", root / "images", "--minutes", "5", "--num", "2", "--no-progress"]
    assert cli("time-curve", *common, "--images", "1,2", "--out", root / "A") == 0
    assert cli("time-curve", *common, "--images", "2,3", "--set", "train.steps=2", "--out", root / "B") == 0
    return root


def test_parse_curve_pick():
    assert parse_curve_pick("new=runs/curve-3lv").label == "new"
    assert parse_curve_pick("runs/curve-3lv") == parse_curve_pick("curve-3lv=runs/curve-3lv")
    assert parse_curve_pick("x=a/b=c") == parse_curve_pick("x=a/b=c")  # a '=' inside the path is not a label
    assert parse_curve_pick("x=a/b=c").folder == Path("a/b=c")
    with pytest.raises(ValueError, match="label 'b=c'.*give LABEL=RUN"):  # the folder's name is no label
        parse_curve_pick("a/b=c")
    with pytest.raises(ValueError, match="label 'a b'"):
        parse_curve_pick("a b=runs/x")
    with pytest.raises(ValueError, match="expected"):
        parse_curve_pick("new=")


def test_the_samples_of_every_point_are_stored_for_the_comparison(curves):
    rows = json.loads((curves / "A" / "time_curve.json").read_text())["rows"]
    assert [(r["image"], r["label"]) for r in rows] == [("1", "final"), ("2", "final")]
    for r in rows:
        assert r["samples"] == [
            f"samples/{r['image']}/final/sample_000.png",
            f"samples/{r['image']}/final/sample_001.png",
        ]
        assert all((curves / "A" / f).is_file() for f in r["samples"])


def test_two_runs_on_their_shared_image_with_baselines_sheet_and_mlflow(curves, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    params = write_params(tmp_path, "pipeline", tracking={"enabled": True})
    out = tmp_path / "cmp"
    argv = ["new=" + str(curves / "A"), curves / "B", "--baselines", curves / "baselines", "--params", params]
    assert cli("time-curve-compare", *argv, "--out", out) == 0
    rows = list(csv.DictReader((out / "time_curve_compare.csv").open()))
    assert [(r["run"], r["image"], r["label"]) for r in rows] == [
        ("new", "2", "final"),
        ("B", "2", "final"),
        ("new", "mean of 1", "final"),
        ("B", "mean of 1", "final"),
        ("SinGAN", "2", "published"),  # GPNN has no image 2
        ("SinGAN", "mean of 1", "published"),
    ]
    a = json.loads((curves / "A" / "time_curve.json").read_text())["rows"][1]
    assert float(rows[0]["patch_swd"]) == pytest.approx(a["patch_swd"]) and rows[0]["steps"] == "3"
    assert rows[1]["steps"] == "2" and float(rows[4]["patch_swd"]) > 0
    result = json.loads((out / "time_curve_compare.json").read_text())
    assert result["settings"]["images"] == ["2"] and result["settings"]["marks"] == ["final"]
    assert "left out (not in every run): 1, 3" in result["notes"]
    # training image + 2 runs x 1 mark + SinGAN, each row at the processed training image's height
    height = Image.open(curves / "A" / "runs/2/preprocess/image.png").height
    assert Image.open(out / result["sheets"]["2"]).height == 4 * (height + PAD) + PAD
    report = (out / "time_curve_compare.md").read_text()
    assert "| 2 | " in report and "| new | final | mean of 1 |" in report and "SinGAN" in report
    assert (out / "time_curve_compare.png").stat().st_size > 10000
    assert "time-curve-compare: 2 runs on 1 images" in capsys.readouterr().out
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["tiny-time-curve"], output_format="list")
    logged = [r for r in runs if "new.final.mean_patch_swd" in r.data.metrics]
    assert len(logged) == 1 and "SinGAN.published.mean_patch_swd" in logged[0].data.metrics
    assert logged[0].data.params["marks"] == "final"


def test_a_run_without_stored_samples_gets_a_note_not_a_sheet(curves, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "runs").symlink_to(curves / "B" / "runs")
    result = json.loads((curves / "B" / "time_curve.json").read_text())
    for r in result["rows"]:
        r.pop("samples")  # as written before the samples were stored
    (old / "time_curve.json").write_text(json.dumps(result))
    params = write_params(tmp_path, "pipeline", tracking={"enabled": False})
    assert cli("time-curve-compare", curves / "A", old, "--params", params, "--out", tmp_path / "cmp") == 0
    notes = json.loads((tmp_path / "cmp" / "time_curve_compare.json").read_text())["notes"]
    assert any("sheet 2: not drawn" in n and "old @ final" in n and "--rescore" in n for n in notes)
    assert not (tmp_path / "cmp" / "sheets").exists()


def _fake_curve(folder: Path, images: list[str], labels: list[str], max_size: int = 48) -> Path:
    rows = [
        {"image": i, "label": lab, "minutes": 1.0, "patch_swd": 0.1, "copy_fraction": 0.0}
        for i in images
        for lab in labels
    ]
    folder.mkdir(parents=True)
    (folder / "time_curve.json").write_text(json.dumps({"rows": rows, "settings": {"max_size": max_size}}))
    return folder


@pytest.mark.parametrize(
    "second, extra, message",
    [
        (None, [], "give at least two time-curve runs"),
        ("a", [], "two runs named 'a'"),
        ("missing", [], "missing: no time_curve.json"),
        ("big", [], "different preprocess.max_size (a: 48, big: 96)"),
        ("other", [], "no image is in every run (a: 1, 2; other: 3)"),
        (
            "b",
            ["--minutes", "5,10"],
            "--minutes: a has no point at 10 min (its points: 5 min); marks in every run: 5 min",
        ),
        ("late", [], "no mark is in every run (a: 5 min; late: 10 min)"),
    ],
)
def test_bad_picks_exit_2_naming_the_run_and_write_nothing(tmp_path, capsys, second, extra, message):
    _fake_curve(tmp_path / "a", ["1", "2"], ["5 min"])
    _fake_curve(tmp_path / "b", ["1"], ["5 min"])
    _fake_curve(tmp_path / "big", ["1"], ["5 min"], max_size=96)
    _fake_curve(tmp_path / "other", ["3"], ["5 min"])
    _fake_curve(tmp_path / "late", ["1"], ["10 min"])
    picks = [tmp_path / "a"] + (
        [] if second is None else [f"a={tmp_path / 'b'}" if second == "a" else tmp_path / second]
    )
    params = write_params(tmp_path, "pipeline", tracking={"enabled": False})
    assert cli("time-curve-compare", *picks, *extra, "--params", params, "--out", tmp_path / "cmp") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()


def test_out_may_not_be_one_of_the_runs(tmp_path, capsys):
    _fake_curve(tmp_path / "a", ["1"], ["5 min"])
    _fake_curve(tmp_path / "b", ["1"], ["5 min"])
    params = write_params(tmp_path, "pipeline", tracking={"enabled": False})
    assert cli("time-curve-compare", tmp_path / "a", tmp_path / "b", "--params", params, "--out", tmp_path / "b") == 2
    assert "is one of the compared runs" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["time_curve.json"]
