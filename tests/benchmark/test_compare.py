"""``benchmark-compare``: arms of two runs on the images they share, paired wins, sheets, bad picks.

Toy scale (tests/benchmark/conftest.py's ``two_runs``: 32 px, 4 training steps): numbers mean
nothing; which rows, images, names and errors come out is what is tested.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from sindiffusion.benchmark import places
from sindiffusion.benchmark.compare import Pick, parse_pick
from sindiffusion.benchmark.report import paired_rows
from tests.tiny import cli


def _csv(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "benchmark.csv").open()))


def test_arms_of_two_runs_on_the_images_both_have(two_runs, tmp_path):
    b, c = two_runs, tmp_path / "C"
    assert cli("benchmark-compare", f"old={b / 'A'}:{places.OURS}", f"{b / 'B'}:fewer", "--out", c) == 0
    rows = _csv(c)
    per_image = {(r["method"], r["image"]) for r in rows if r["kind"] == "image"}
    # image 3 is only in B: left out of every arm and baseline, so each mean is over the same images
    assert per_image == {(m, i) for m in ("old", "fewer", "SinGAN") for i in ("1", "2")} | {("GPNN", "1")}
    old_a = {r["image"]: r for r in _csv(b / "A") if r["method"] == places.OURS and r["kind"] == "image"}
    for r in rows:
        if r["method"] == "old" and r["kind"] == "image":
            assert r["patch_swd"] == old_a[r["image"]]["patch_swd"]  # the run's own numbers, renamed
    means = {r["method"]: r for r in rows if r["kind"] == "mean"}
    assert means["fewer"]["image"] == "mean of 2"
    result = json.loads((c / "benchmark.json").read_text())
    assert result["settings"]["arms"]["fewer"]["run"] == str(b / "B")
    assert result["settings"]["arms"]["old"]["arm"] == places.OURS
    assert "left out (not in every arm): 3" in result["notes"]
    pairs = {(p["method"], p["other"]): p for p in result["paired"]}
    assert set(pairs) == {("old", "fewer"), ("old", "SinGAN"), ("old", "GPNN"), ("fewer", "SinGAN"), ("fewer", "GPNN")}
    assert pairs[("old", "fewer")]["images"] == 2 and pairs[("old", "GPNN")]["images"] == 1
    md = (c / "benchmark.md").read_text()
    assert "## Per image: patch_swd, one method against another" in md and "| old | fewer |" in md
    # one sheet per shared image: the training image, each arm's samples, the baselines (GPNN on 1 only)
    assert sorted(p.name for p in (c / "sheets").iterdir()) == ["1.png", "2.png"]
    assert Image.open(c / "sheets" / "1.png").height > Image.open(c / "sheets" / "2.png").height  # 5 rows vs 4


def test_a_whole_run_is_every_arm_of_it(two_runs, tmp_path):
    b = two_runs
    assert cli("benchmark-compare", b / "B", f"default={b / 'A'}:{places.OURS}", "--out", tmp_path / "C") == 0
    means = [r["method"] for r in _csv(tmp_path / "C") if r["kind"] == "mean"]
    assert means[:2] == ["fewer", "default"] and set(means[2:]) == {"SinGAN", "GPNN"}  # arms in the order given


@pytest.mark.parametrize(
    "picks, words",
    [
        (["{A}:" + places.OURS, "{A}:" + places.OURS], f"a second arm named '{places.OURS}'"),
        (["{A}:nope", "{B}:fewer"], "has no arm 'nope'; its arms: " + places.OURS),
        (["{A}", "{missing}:x"], "benchmark.json: not found"),
        (["old={A}", "{B}:fewer"], "a LABEL names one arm"),
        (["{A}:", "{B}:fewer"], "expected [LABEL=]RUN[:ARM]"),
        (["{A}"], "only one arm"),
        (["SinGAN={A}:" + places.OURS, "{B}:fewer"], "'SinGAN' is also a baseline of the runs"),
    ],
)
def test_bad_picks_are_exit_2_and_write_nothing(two_runs, tmp_path, capsys, picks, words):
    b = two_runs
    folders = {"A": b / "A", "B": b / "B", "missing": b / "missing"}
    assert cli("benchmark-compare", *[p.format(**folders) for p in picks], "--out", tmp_path / "C") == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "C").exists()


def test_runs_at_other_sizes_or_into_a_compared_run_are_refused(two_runs, tmp_path, capsys):
    b, d = two_runs, tmp_path / "D"
    before = (b / "A" / "benchmark.json").read_text()
    assert cli("benchmark-compare", b / "A", f"{b / 'B'}:fewer", "--out", b / "A") == 2
    assert "is one of the compared runs" in capsys.readouterr().err
    assert (b / "A" / "benchmark.json").read_text() == before
    shutil.copytree(b / "B", d)
    data = json.loads((d / "benchmark.json").read_text())
    for r in data["rows"]:
        if r["method"] == "fewer":
            r["train_size"] = [64, 64]  # as if trained at another preprocess.max_size
    (d / "benchmark.json").write_text(json.dumps(data))
    assert cli("benchmark-compare", b / "A", f"{d}:fewer", "--out", tmp_path / "C") == 2
    assert "only runs at one preprocess.max_size compare" in capsys.readouterr().err
    assert not (tmp_path / "C").exists()


@pytest.mark.parametrize(
    "spec, pick",
    [
        ("bench", Pick(Path("bench"))),
        ("bench:unet", Pick(Path("bench"), "unet")),
        ("new=runs/bench:unet-minsnr", Pick(Path("runs/bench"), "unet-minsnr", "new")),
        ("runs/lr=1e-3:unet", Pick(Path("runs/lr=1e-3"), "unet")),  # '=' inside a path is not a label
        ("/x:y/bench", Pick(Path("/x:y/bench"))),  # ':' inside a path is not an arm
    ],
)
def test_parse_pick(spec, pick):
    assert parse_pick(spec) == pick


def test_paired_rows_count_strict_wins_and_take_medians():
    rows = [
        {"method": m, "image": str(i), "patch_swd": v}
        for m, vals in {"a": [1, 2, 3, 4], "b": [2, 2, 1, None], "S": [5, 0, 0, 0]}.items()
        for i, v in enumerate(vals)
    ]
    pairs = {(p["method"], p["other"]): p for p in paired_rows(rows, ["a", "b"], ["S"])}
    assert set(pairs) == {("a", "b"), ("a", "S"), ("b", "S")}
    # a vs b on images 0-2 (b has no number on 3): 1 < 2 wins, 2 = 2 is not a win, 3 > 1 loses
    assert (pairs[("a", "b")]["lower"], pairs[("a", "b")]["images"]) == (1, 3)
    assert (pairs[("a", "b")]["median"], pairs[("a", "b")]["median_other"]) == (2, 2)
    assert (pairs[("a", "S")]["lower"], pairs[("a", "S")]["images"]) == (1, 4)
    assert pairs[("b", "S")]["images"] == 3


def test_arms_without_a_shared_image_are_exit_2(two_runs, tmp_path, capsys):
    b, d = two_runs, tmp_path / "D"
    shutil.copytree(b / "B", d)
    data = json.loads((d / "benchmark.json").read_text())
    data["rows"] = [r for r in data["rows"] if r["method"] != "fewer" or r["image"] == "3"]
    (d / "benchmark.json").write_text(json.dumps(data))
    assert cli("benchmark-compare", b / "A", f"{d}:fewer", "--out", tmp_path / "C") == 2
    assert f"no image has results in every chosen arm ({places.OURS}: 1, 2; fewer: 3)" in capsys.readouterr().err
    assert not (tmp_path / "C").exists()
