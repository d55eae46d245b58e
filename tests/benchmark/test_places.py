"""The one-command benchmark at toy scale: arms side by side, baselines, sheets, resume, merge.

Tiny images (40x56 -> 32 px), 4 training steps, 3 DDIM steps: numbers mean nothing, the
structure, the bookkeeping and the errors are what is tested.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from sindiffusion.artifacts import sha256_file
from sindiffusion.benchmark import places
from sindiffusion.benchmark.sheets import PAD
from tests.tiny import cli, write_params

pytestmark = pytest.mark.e2e  # the end-to-end tier: `python -m pytest -m e2e`


def rows_of(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "benchmark.csv").open()))


def test_two_arms_baselines_sheets_and_resume(bench, monkeypatch):
    params = write_params(bench, "pipeline", train={"steps": 4}, sample={"steps": 3}, tracking={"enabled": True})
    monkeypatch.chdir(bench)
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = bench / "bench"
    argv = [
        "benchmark",
        "--params",
        params,
        "--images-dir",
        bench / "images",
        "--images",
        "1,2",
        "--out",
        out,
        "--arm",
        f"a={params}",
        "--arm",
        f"b={params}:train.steps=2,sample.num_samples=3",
        "--baselines",
        bench / "baselines",
        "--no-progress",
    ]
    assert cli(*argv) == 0
    rows = rows_of(out)
    image_rows = {(r["method"], r["image"]): r for r in rows if r["kind"] == "image"}
    assert set(image_rows) == {
        ("a", "1"),
        ("a", "2"),
        ("b", "1"),
        ("b", "2"),
        ("SinGAN", "1"),
        ("SinGAN", "2"),
        ("GPNN", "1"),
    }  # image 3 not selected; GPNN has no sample of 2
    for arm, n in (("a", 2), ("b", 3)):
        for image in ("1", "2"):
            r = image_rows[(arm, image)]
            assert int(r["n_samples"]) == n and float(r["patch_swd"]) > 0 and float(r["pixel_diversity"]) > 0
            assert 0 < float(r["per_sample_s"]) < float(r["first_sample_s"])
            assert 0 < float(r["train_s"]) < float(r["first_sample_s"])
            assert 0 <= float(r["bright_max_dev"]) <= 1 and 0 <= int(float(r["bright_over"])) <= n
            assert r["sifid_pool1"] == "" and r["lpips_diversity"] == ""  # unavailable, not 0
    gpnn, singan = image_rows[("GPNN", "1")], image_rows[("SinGAN", "1")]
    assert float(gpnn["copy_nn_dist"]) < float(singan["copy_nn_dist"])  # the copy copies
    assert float(gpnn["bright_max_dev"]) < 0.01 and gpnn["train_s"] == "" and gpnn["pixel_diversity"] == ""
    means = {r["method"]: r for r in rows if r["kind"] == "mean"}
    assert [r["method"] for r in rows if r["kind"] == "mean"] == [
        "a",
        "b",
        "GPNN",
        "SinGAN",
    ]  # arms, then baseline folders
    assert means["b"]["n_samples"] == "6"  # totals, not means
    assert float(means["a"]["bright_max_dev"]) == max(float(image_rows[("a", i)]["bright_max_dev"]) for i in "12")
    assert float(means["a"]["patch_swd"]) == pytest.approx(
        sum(float(image_rows[("a", i)]["patch_swd"]) for i in "12") / 2
    )
    md = (out / "benchmark.md").read_text()
    assert "| 1 | a |" in md and "| 2 | b |" in md and "| GPNN | mean of 1 |" in md and "[1](sheets/1.png)" in md
    assert "`a`:" in md and "train.steps=2" in md and "inception_v3_google-0cc3c7c2.pth" in md
    sheet = Image.open(out / "sheets" / "1.png")
    train_h = Image.open(out / "a" / "1" / "preprocess" / "image.png").height
    assert sheet.height == 5 * (train_h + PAD) + PAD  # training, a, b, SinGAN, GPNN
    assert Image.open(out / "sheets" / "2.png").height == 4 * (train_h + PAD) + PAD  # no GPNN sample of 2
    assert (out / "benchmark.png").stat().st_size > 1000

    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{bench / 'mlflow.db'}")
    run = client.search_runs(
        [client.get_experiment_by_name("tiny-benchmark").experiment_id], "tags.`sindiffusion.stage` = 'benchmark'"
    )[0]
    assert run.data.metrics["b.mean_n_samples"] == 6 and "gpnn.mean_copy_nn_dist" in run.data.metrics
    assert {f.path for f in client.list_artifacts(run.info.run_id, "sheets")} == {"sheets/1.png", "sheets/2.png"}
    assert client.get_experiment_by_name("tiny-benchmark-a") is not None  # each arm's stage runs apart

    # resume: a rerun reuses finished images; a half-done image reruns only its missing stages
    ckpt = out / "b" / "2" / "train" / "model.pt"
    stamp = ckpt.stat().st_mtime_ns
    timing = json.loads((out / "b" / "2" / "benchmark" / "timing.json").read_text())
    (out / "b" / "2" / "benchmark" / "row.json").unlink()
    shutil.rmtree(out / "b" / "2" / "samples")
    row_a = (out / "a" / "1" / "benchmark" / "row.json").read_text()
    assert cli(*argv) == 0
    assert ckpt.stat().st_mtime_ns == stamp and (out / "a" / "1" / "benchmark" / "row.json").read_text() == row_a
    again = json.loads((out / "b" / "2" / "benchmark" / "timing.json").read_text())
    assert again["train_s"] == timing["train_s"] and again["preprocess_s"] == timing["preprocess_s"]
    assert {(r["method"], r["image"]) for r in rows_of(out) if r["kind"] == "image"} == set(image_rows)


def test_a_finished_image_is_reported_under_the_arm_that_reuses_it(bench, monkeypatch):
    """Rows are reused by settings (fingerprint), not by name: an arm folder renamed (or linked in from
    another study) reports under this command's arm name, so its images are not split from the mean."""
    params = write_params(bench, "pipeline", train={"steps": 2}, sample={"steps": 2})
    monkeypatch.chdir(bench)
    out = bench / "bench"
    base = ["benchmark", "--params", params, "--images-dir", bench / "images", "--out", out, "--no-progress"]
    assert cli(*base, "--images", "1", "--arm", f"old={params}") == 0
    (out / "old").rename(out / "new")
    assert cli(*base, "--images", "1,2", "--arm", f"new={params}") == 0
    rows = rows_of(out)
    assert {(r["method"], r["image"]) for r in rows if r["kind"] == "image"} == {("new", "1"), ("new", "2")}
    assert [r["method"] for r in rows if r["kind"] == "mean"] == ["new"]


def test_results_written_under_the_legacy_fingerprint_are_reused(bench, monkeypatch):
    """Rows and stage timings from before fingerprints dropped default values still count."""
    from sindiffusion.benchmark.arms import arm_params, legacy_fingerprint, parse_arm
    from sindiffusion.stages import train

    params = write_params(bench, "pipeline", train={"steps": 2}, sample={"steps": 2})
    monkeypatch.chdir(bench)
    out = bench / "bench"
    argv = ["benchmark", "--params", params, "--images-dir", bench / "images", "--images", "1", "--out", out]
    assert cli(*argv, "--arm", f"a={params}", "--no-progress") == 0
    legacy = legacy_fingerprint(arm_params(parse_arm(f"a={params}"), [], bench / "images", out))
    row, timing = out / "a" / "1" / "benchmark" / "row.json", out / "a" / "1" / "benchmark" / "timing.json"
    for f in (row, timing):
        f.write_text(json.dumps({**json.loads(f.read_text()), "fingerprint": legacy}))
    calls: list[str] = []
    monkeypatch.setattr(train, "run", lambda *a, **k: calls.append("train"))
    assert cli(*argv, "--arm", f"a={params}", "--no-progress") == 0  # the finished row: reused
    row.unlink()  # a half-done image: its finished stages are not run again
    assert cli(*argv, "--arm", f"a={params}", "--no-progress") == 0
    assert calls == [] and json.loads(row.read_text())["fingerprint"] != legacy  # rewritten in the new spelling
    # and a row of really other settings is still refused
    row.write_text(json.dumps({**json.loads(row.read_text()), "fingerprint": "0123456789abcdef"}))
    assert cli(*argv, "--arm", f"a={params}", "--no-progress") == 2


def test_arms_that_differ_after_training_train_once(bench, monkeypatch):
    """A sampling-only arm adopts the first arm's model (same file, same train_s) and trains nothing."""
    from sindiffusion.stages import train

    params = write_params(bench, "pipeline", train={"steps": 3}, sample={"steps": 3})
    monkeypatch.chdir(bench)
    calls: list[str] = []
    real_run = train.run
    monkeypatch.setattr(train, "run", lambda p, image, **kw: calls.append(image) or real_run(p, image, **kw))
    out = bench / "bench"
    arms = ["--arm", f"a={params}", "--arm", f"b={params}:sample.steps=2", "--arm", f"c={params}:train.steps=2"]
    argv = ["benchmark", "--params", params, "--images-dir", bench / "images", "--images", "1,2", "--out", out]
    assert cli(*argv, *arms, "--no-progress") == 0
    assert calls == ["1", "1", "2", "2"]  # a and c train; b adopts a's model
    for image in ("1", "2"):
        a, b, c = (out / arm / image for arm in "abc")
        assert (b / "train" / "model.pt").samefile(a / "train" / "model.pt")
        assert (b / "preprocess" / "image.png").samefile(a / "preprocess" / "image.png")
        assert not (c / "train" / "model.pt").samefile(a / "train" / "model.pt")
        row_a, row_b = (json.loads((d / "benchmark" / "row.json").read_text()) for d in (a, b))
        assert row_b["train_from"] == "a" and "train_from" not in row_a and row_b["train_s"] == row_a["train_s"]
        assert json.loads((b / "samples" / "samples.json").read_text())["steps"] == 2
    # a rerun after b lost its samples: b samples again from the adopted model, nothing trains
    shutil.rmtree(out / "b" / "1" / "samples")
    (out / "b" / "1" / "benchmark" / "row.json").unlink()
    calls.clear()
    assert cli(*argv, *arms, "--no-progress") == 0
    assert calls == [] and (out / "b" / "1" / "benchmark" / "row.json").is_file()


def test_a_stop_signal_stops_the_benchmark_with_the_resumable_status(bench, monkeypatch):
    """SIGTERM (Slurm preemption) during one image's training ends the command with 75, not the next image."""
    import signal

    from sindiffusion.runtime import EXIT_RESUMABLE, Preempted
    from sindiffusion.stages import train

    params = write_params(bench, "pipeline", train={"steps": 3}, sample={"steps": 2})
    monkeypatch.chdir(bench)
    calls: list[str] = []

    def preempted(p, image, **kw):
        calls.append(image)
        raise Preempted(signal.SIGTERM, 1)

    monkeypatch.setattr(train, "run", preempted)
    out = bench / "bench"
    argv = ["benchmark", "--params", params, "--images-dir", bench / "images", "--images", "1,2", "--out", out]
    assert cli(*argv, "--no-progress") == EXIT_RESUMABLE
    assert calls == ["1"] and not (out / "benchmark.json").exists()


def test_a_resumed_training_counts_its_earlier_segments_in_the_wall_time(bench, monkeypatch):
    """Killed at step k and resumed, an image's train_s is both segments, not the last one only."""
    from sindiffusion.stages import train

    params = write_params(bench, "pipeline", train={"steps": 3}, sample={"steps": 2})
    monkeypatch.chdir(bench)
    real_run = train.run

    def resumed(p, image, **kw):  # as if an earlier call had trained 100 s before being preempted
        metrics = real_run(p, image, **kw)
        path = Path(p.section("data").results_dir) / image / "train" / "metrics.json"
        earlier = {**metrics, "resumed_from_step": 2, "train_seconds_total": metrics["train_seconds"] + 100.0}
        path.write_text(json.dumps(earlier))
        return earlier

    monkeypatch.setattr(train, "run", resumed)
    out = bench / "bench"
    argv = ["benchmark", "--params", params, "--images-dir", bench / "images", "--images", "1", "--out", out]
    assert cli(*argv, "--no-progress") == 0
    row = json.loads((out / places.OURS / "1" / "benchmark" / "row.json").read_text())
    assert 100 < row["train_s"] < row["first_sample_s"]


def test_subsets_merge_into_the_table_of_one_run(bench):
    params = write_params(bench, "pipeline", train={"steps": 4}, sample={"steps": 3}, tracking={"enabled": False})
    common = ["--params", params, "--images-dir", bench / "images", "--baselines", bench / "baselines", "--no-progress"]
    assert cli("benchmark", *common, "--images", "1-2", "--out", bench / "full") == 0
    # two partial runs of the same command; their per-image results are the full run's (reused on resume)
    for part, sel in (("A", "1"), ("B", "2")):
        shutil.copytree(bench / "full" / places.OURS, bench / part / places.OURS)
        assert cli("benchmark", *common, "--images", sel, "--out", bench / part) == 0
        assert [r["image"] for r in rows_of(bench / part) if r["method"] == places.OURS and r["kind"] == "image"] == [
            sel
        ]
    assert cli("benchmark-merge", bench / "A", bench / "B", "--out", bench / "C") == 0
    assert (bench / "C" / "benchmark.csv").read_text() == (bench / "full" / "benchmark.csv").read_text()
    merged = json.loads((bench / "C" / "benchmark.json").read_text())
    assert merged["settings"]["merged_from"] == [str(bench / "A"), str(bench / "B")]
    assert sorted(p.name for p in (bench / "C" / "sheets").iterdir()) == ["1.png", "2.png"]

    # the same results folder under other settings, or runs of other arms: refused, nothing written
    before = (bench / "full" / "benchmark.csv").read_text()
    assert cli("benchmark", *common, "--images", "1-2", "--out", bench / "full", "--set", "train.steps=5") == 2
    assert (bench / "full" / "benchmark.csv").read_text() == before
    shutil.copytree(bench / "A", bench / "D")
    data = json.loads((bench / "D" / "benchmark.json").read_text())
    data["settings"]["arms"][places.OURS]["fingerprint"] = "other"
    (bench / "D" / "benchmark.json").write_text(json.dumps(data))
    assert cli("benchmark-merge", bench / "B", bench / "D", "--out", bench / "E") == 2
    assert cli("benchmark-merge", bench / "B", bench / "missing", "--out", bench / "E") == 2
    assert not (bench / "E" / "benchmark.csv").exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--images", "1,9"], "'9' is not an image"),
        (["--arm", "a=params.yaml", "--arm", "a=params.yaml"], "repeated"),
        (["--arm", "a=missing.yaml"], "missing.yaml: params file not found"),
        (["--arm", "a=params.yaml:train.nope=1"], "train.nope"),
        (["--arm", "a=params.yaml", "--arm", "b=params.yaml:evaluate.patch_size=5"], "evaluate section differs"),
    ],
)
def test_bad_input_is_exit_2_before_any_work(bench, monkeypatch, capsys, extra, words):
    write_params(bench, "pipeline", tracking={"enabled": False})
    monkeypatch.chdir(bench)
    assert cli("benchmark", "--images-dir", bench / "images", "--out", bench / "o", *extra) == 2
    assert words in capsys.readouterr().err
    assert not (bench / "o").exists()


def test_bad_folders_are_exit_2(tmp_path):
    assert cli("benchmark", "--images-dir", tmp_path / "missing", "--out", tmp_path / "o") == 2
    (tmp_path / "empty").mkdir()
    assert cli("benchmark", "--images-dir", tmp_path / "empty", "--out", tmp_path / "o") == 2
    assert cli("benchmark-merge", tmp_path / "o", "--out", tmp_path / "m") == 2


def test_metric_columns_are_the_registry_keys_then_the_extras(tmp_path):
    """The columns come from the metric registry, in the order runs made before it wrote (a merge compares them)."""
    from sindiffusion.benchmark import report
    from sindiffusion.config import load_params

    params = load_params(write_params(tmp_path, "pipeline"), ["evaluate.sifid_layers=[pool1,pool2]"])
    assert places.metric_columns(params) == [
        "sifid_pool1",
        "sifid_pool2",
        "lpips_diversity",
        "patch_swd",
        "copy_nn_dist",
        "copy_fraction",
        "pixel_diversity",
        "sharpness",
        "stretch",
        "coverage",
        *report.EXTRA,
    ]


def test_an_image_of_the_same_name_from_another_file_is_not_reused(bench, monkeypatch, capsys):
    """Rows record the sha256 of the image they were made from: the same name from another file is
    refused (exit 2, nothing run) for a finished image, and done again for a half-done one."""
    from sindiffusion.stages import train

    params = write_params(bench, "pipeline", train={"steps": 2}, sample={"steps": 2})
    monkeypatch.chdir(bench)
    out = bench / "bench"
    argv = ["benchmark", "--params", params, "--images", "1", "--out", out, "--no-progress", "--arm", f"a={params}"]
    assert cli(*argv, "--images-dir", bench / "images") == 0
    row = out / "a" / "1" / "benchmark" / "row.json"
    assert len(json.loads(row.read_text())["source_sha256"]) == 64
    other = bench / "other"
    other.mkdir()
    shutil.copy(bench / "images" / "2.jpg", other / "1.jpg")  # another picture named 1
    calls: list[str] = []
    real = train.run
    monkeypatch.setattr(train, "run", lambda *a, **k: calls.append("train") or real(*a, **k))
    assert cli(*argv, "--images-dir", other) == 2
    err = capsys.readouterr().err
    assert "row.json: made from another image than" in err and "other/1.jpg" in err and calls == []
    row.unlink()  # half-done: its stages were finished from the other file, so they run again
    assert cli(*argv, "--images-dir", other) == 0
    assert calls == ["train"]
    assert json.loads(row.read_text())["source_sha256"] == sha256_file(other / "1.jpg")


def test_sizes_draw_every_arm_at_every_size_from_one_training(bench, monkeypatch):
    """``--sizes 1x1,1x2``: the default arm becomes ``sindiffusion@1x1`` and ``sindiffusion@1x2``, one
    training per image, the samples at each size, one table row and one sheet row per size."""
    from PIL import Image

    from sindiffusion.stages import train

    params = write_params(bench, "pipeline", train={"steps": 3}, sample={"steps": 3})
    monkeypatch.chdir(bench)
    calls: list[str] = []
    real_run = train.run
    monkeypatch.setattr(train, "run", lambda p, image, **kw: calls.append(image) or real_run(p, image, **kw))
    out = bench / "sized"
    argv = ["benchmark", "--params", params, "--images-dir", bench / "images", "--images", "1", "--out", out]
    assert cli(*argv, "--sizes", "1x1,1x2", "--no-progress") == 0
    assert calls == ["1"]
    one, wide = (out / f"sindiffusion@{s}" / "1" / "samples" / "sample_000.png" for s in ("1x1", "1x2"))
    assert Image.open(wide).size == (2 * Image.open(one).size[0], Image.open(one).size[1])
    table = (out / "benchmark.md").read_text()
    assert "| sindiffusion@1x1 |" in table and "| sindiffusion@1x2 |" in table
    assert cli(*argv, "--sizes", "1x0", "--no-progress") == 2
