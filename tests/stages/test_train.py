"""The train stage: outputs, metrics, and resuming that reproduces a straight run."""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

import pytest
import torch

from sindiffusion.artifacts import sha256_file
from sindiffusion.checkpoint import load_checkpoint
from sindiffusion.cli import main
from sindiffusion.training.trainer import Trainer
from tests.tiny import one_torch_thread, tiny_project, write_image  # noqa: F401

N = 6


def _run(*argv: str) -> int:
    return main([*argv, "--no-progress"])


def _setup(root: Path, **sections) -> None:
    tiny_project(root, **sections)
    assert main(["preprocess", "--image", "img"]) == 0


def _loss_rows(root: Path) -> list[dict]:
    with open(root / "results/img/train/loss.csv", newline="") as f:
        return list(csv.DictReader(f))


def _assert_same_weights(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca["step"] == cb["step"]
    for key in ("model", "ema"):
        assert ca[key].keys() == cb[key].keys()
        for name in ca[key]:
            torch.testing.assert_close(ca[key][name], cb[key][name], rtol=1e-5, atol=1e-6, msg=f"{key}.{name}")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """N steps in one go (log every step)."""
    root = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        _setup(root)
        assert _run("train", "--image", "img") == 0
    return root


def test_outputs_and_metrics(straight):
    root = straight
    metrics = json.loads((root / "results/img/train/metrics.json").read_text())
    assert set(metrics) == {
        "final_loss",
        "steps",
        "it_per_s",
        "train_seconds",
        "resumed_from_step",
        "device",
        "precision",
        "train_seconds_total",
        "stopped_by_time",
    }
    assert metrics["steps"] == N and metrics["resumed_from_step"] == 0 and metrics["device"] == "cpu"
    assert metrics["it_per_s"] > 0 and metrics["train_seconds"] > 0
    rows = _loss_rows(root)
    assert [int(r["step"]) for r in rows] == list(range(1, N + 1))
    assert list(rows[0]) == ["step", "loss", "it_per_s"]
    assert metrics["final_loss"] == pytest.approx(float(rows[-1]["loss"]), abs=1e-6)  # log_every=1: same value
    assert all(0 < float(r["loss"]) < 10 for r in rows)

    ckpt = load_checkpoint(root / "results/img/train/model.pt")
    processed = root / "results/img/preprocess/image.png"
    assert ckpt["step"] == N
    assert ckpt["image"] == {
        "name": "img",
        "sha256": sha256_file(processed),
        "size": [40, 48],
        "path": "results/img/preprocess/image.png",
    }
    assert ckpt["config"]["model"]["base_channels"] == 8 and ckpt["config"]["model"]["channel_mult"] == [1, 2]
    assert ckpt["config"]["train"]["steps"] == N and ckpt["config"]["diffusion"]["timesteps"] == 100
    assert {"optimizer", "rng"} <= set(ckpt)
    # the raw weights moved away from the EMA ones, and from initialisation
    assert any(not torch.equal(ckpt["model"][k], ckpt["ema"][k]) for k in ckpt["model"])
    # the resume checkpoint equals the final one
    _assert_same_weights(root / "results/img/train/model.pt", root / "results/img/train/resume/latest.pt")


def test_k_steps_then_resume_equals_straight(straight, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _setup(tmp_path, train={"save_every": 3})
    assert _run("train", "--image", "img", "--set", "train.steps=3") == 0
    assert load_checkpoint(tmp_path / "results/img/train/resume/latest.pt")["step"] == 3
    capsys.readouterr()
    assert _run("train", "--image", "img", "--set", f"train.steps={N}") == 0
    assert "resuming from results/img/train/resume/latest.pt at step 3" in capsys.readouterr().err

    _assert_same_weights(tmp_path / "results/img/train/model.pt", straight / "results/img/train/model.pt")
    rows, ref = _loss_rows(tmp_path), _loss_rows(straight)
    assert [r["step"] for r in rows] == [r["step"] for r in ref]  # no duplicates, nothing missing
    for a, b in zip(rows, ref):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), abs=1e-5)
    metrics = json.loads((tmp_path / "results/img/train/metrics.json").read_text())
    assert metrics["resumed_from_step"] == 3 and metrics["steps"] == N


def test_interrupted_run_resumes_from_periodic_checkpoint(straight, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _setup(tmp_path, train={"save_every": 2})
    real_step = Trainer.train_step

    def interrupt_after_5(self):
        if self.step == 5:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupt_after_5)
    assert _run("train", "--image", "img") == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "results/img/train/model.pt").exists()
    assert load_checkpoint(tmp_path / "results/img/train/resume/latest.pt")["step"] == 4
    assert [int(r["step"]) for r in _loss_rows(tmp_path)] == [1, 2, 3, 4, 5]  # logged beyond the checkpoint
    assert not [p for p in (tmp_path / "results/img/train").rglob(".*")]  # no temp files

    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert _run("train", "--image", "img") == 0
    assert "at step 4" in capsys.readouterr().err
    _assert_same_weights(tmp_path / "results/img/train/model.pt", straight / "results/img/train/model.pt")
    rows, ref = _loss_rows(tmp_path), _loss_rows(straight)
    assert [int(r["step"]) for r in rows] == list(range(1, N + 1))  # step 5 was redone, not duplicated
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref]


def test_rerun_at_target_step_keeps_results(straight, tmp_path, monkeypatch, capsys):
    import shutil

    shutil.copytree(straight / "results", tmp_path / "results")
    shutil.copytree(straight / "data", tmp_path / "data")
    shutil.copy(straight / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    before = json.loads((tmp_path / "results/img/train/metrics.json").read_text())
    assert _run("train", "--image", "img", "--set", "train.log_every=3") == 0  # logging keys do not matter
    after = json.loads((tmp_path / "results/img/train/metrics.json").read_text())
    assert after["resumed_from_step"] == N and after["steps"] == N
    assert after["final_loss"] == pytest.approx(before["final_loss"], abs=1e-5)
    assert [int(r["step"]) for r in _loss_rows(tmp_path)] == list(range(1, N + 1))
    _assert_same_weights(tmp_path / "results/img/train/model.pt", straight / "results/img/train/model.pt")


def test_resume_checkpoint_of_another_config_is_ignored(straight, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _setup(tmp_path)
    assert _run("train", "--image", "img", "--set", "train.steps=3", "--set", "train.lr=0.01") == 0
    capsys.readouterr()
    assert _run("train", "--image", "img") == 0  # lr back to 0.002: not the same run
    err = capsys.readouterr().err
    assert "WARNING" in err and "results/img/train/resume/latest.pt" in err and "another run" in err
    assert "resuming" not in err
    metrics = json.loads((tmp_path / "results/img/train/metrics.json").read_text())
    assert metrics["resumed_from_step"] == 0
    # from scratch: identical to the straight run, and no rows left over from the other run
    _assert_same_weights(tmp_path / "results/img/train/model.pt", straight / "results/img/train/model.pt")
    assert [r["loss"] for r in _loss_rows(tmp_path)] == [r["loss"] for r in _loss_rows(straight)]


def test_resume_checkpoint_of_another_image_is_ignored(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _setup(tmp_path)
    assert _run("train", "--image", "img", "--set", "train.steps=2") == 0
    write_image(tmp_path / "data/images/img.png", seed=5)  # the user replaced the image
    assert main(["preprocess", "--image", "img"]) == 0
    capsys.readouterr()
    assert _run("train", "--image", "img", "--set", "train.steps=3") == 0
    assert "another run" in capsys.readouterr().err
    ckpt = load_checkpoint(tmp_path / "results/img/train/model.pt")
    assert ckpt["image"]["sha256"] == sha256_file(tmp_path / "results/img/preprocess/image.png")
    assert json.loads((tmp_path / "results/img/train/metrics.json").read_text())["resumed_from_step"] == 0


def test_resume_beyond_target_and_unreadable_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _setup(tmp_path)
    assert _run("train", "--image", "img", "--set", "train.steps=3") == 0
    capsys.readouterr()
    assert _run("train", "--image", "img", "--set", "train.steps=2") == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "step 3" in err and "train.steps=2" in err
    assert load_checkpoint(tmp_path / "results/img/train/model.pt")["step"] == 2
    assert [int(r["step"]) for r in _loss_rows(tmp_path)] == [1, 2]

    (tmp_path / "results/img/train/resume/latest.pt").write_bytes(b"garbage")
    assert _run("train", "--image", "img", "--set", "train.steps=1") == 0
    err = capsys.readouterr().err
    assert "ignoring unusable resume checkpoint" in err and "latest.pt" in err
    assert load_checkpoint(tmp_path / "results/img/train/resume/latest.pt")["step"] == 1


def test_processed_image_of_another_model_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path)
    write_image(tmp_path / "results/img/preprocess/image.png", (38, 42))  # not a multiple of 4
    assert _run("train", "--image", "img", "--set", "model.channel_mult=[1,2,2]") == 2
    err = capsys.readouterr().err
    assert "results/img/preprocess/image.png" in err and "multiple of 4" in err
    assert not (tmp_path / "results/img/train").exists() or not any((tmp_path / "results/img/train").iterdir())


def test_wall_clock_snapshots_budget_and_progress_lines(tmp_path, monkeypatch, capsys):
    """Snapshots at fractional minutes, a max_minutes budget that stops before train.steps, plain progress
    lines on stderr with --no-progress; a snapshot is a sampling checkpoint `sample --checkpoint` loads."""
    monkeypatch.chdir(tmp_path)
    _setup(
        tmp_path, train={"steps": 100000, "snapshot_minutes": [0.002, 0.004], "max_minutes": 0.006, "log_every": 1000}
    )
    assert _run("train", "--image", "img") == 0
    err = capsys.readouterr().err
    snaps = tmp_path / "results/img/train/snapshots"
    assert sorted(p.name for p in snaps.iterdir()) == ["min_0.002.pt", "min_0.004.pt"]
    first, second = (load_checkpoint(snaps / n) for n in ("min_0.002.pt", "min_0.004.pt"))
    assert 0.12 <= first["snapshot"]["seconds"] < second["snapshot"]["seconds"]
    assert 0 < first["snapshot"]["steps"] == first["step"] < second["step"]
    assert "optimizer" not in first and first["model"].keys() == first["ema"].keys()
    metrics = json.loads((tmp_path / "results/img/train/metrics.json").read_text())
    assert metrics["stopped_by_time"] is True and 0 < metrics["steps"] < 100000
    assert metrics["train_seconds_total"] >= 0.36
    assert "train: snapshot at 0.002 min" in err
    assert "train: " in err and "/100000 (0%)" in err and "ETA" in err  # the last line when the budget ends
    assert (
        main(
            [
                "sample",
                "--image",
                "img",
                "--no-progress",
                "--checkpoint",
                str(snaps / "min_0.004.pt"),
                "--out",
                str(tmp_path / "snap_samples"),
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "snap_samples").glob("sample_*.png"))) == 2
    assert "sample: 5/5 (100%)" in capsys.readouterr().err


class _Recorder:
    """Stands in for the stage's MLflow run: keeps what is logged."""

    def __init__(self) -> None:
        self.metrics: dict = {}
        self.tags: dict = {}
        self.artifacts: list[tuple[str, str | None]] = []

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.metrics.update(metrics)

    def set_tags(self, tags: dict) -> None:
        self.tags.update(tags)

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        self.artifacts.append((Path(path).name, artifact_path))

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None  # log_dataset, ...


@pytest.mark.parametrize("model", [None, {"kind": "patch", "patch_size": 5, "coarsest_ratio": 1.5}])
def test_every_model_kind_records_checkpoint_metrics_and_loss_alike(tmp_path, monkeypatch, model):
    """The trained (UNet) and the training-free (patch) path log the same things (one shared function)."""
    from sindiffusion.stages import train as train_stage

    recorder = _Recorder()
    monkeypatch.setattr(train_stage, "tracked", lambda *a, **k: contextlib.nullcontext(recorder))
    monkeypatch.chdir(tmp_path)
    project = tiny_project(tmp_path, train={"steps": 2}, tracking={"log_checkpoint": True})
    if model:
        project.edit(replace={"model": model})
    assert main(["preprocess", "--image", "img"]) == 0
    assert _run("train", "--image", "img") == 0
    train = tmp_path / "results/img/train"
    assert recorder.tags["checkpoint.path"].endswith("results/img/train/model.pt")
    assert recorder.tags["checkpoint.sha256"] == sha256_file(train / "model.pt")
    assert recorder.artifacts == [("model.pt", "checkpoint"), ("loss.csv", None)]
    metrics = json.loads((train / "metrics.json").read_text())
    assert recorder.metrics["steps"] == metrics["steps"] == (0 if model else 2)
