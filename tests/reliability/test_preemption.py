"""Training survives signals (issue 9, item 3) and SIGKILLs: resume checkpoints are never corrupt,
a clean stop loses no step, the loss history stays complete, and killed writes leave no litter.

The training runs in a forked child process (a real process that gets real signals, without
paying the torch import for every start).
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from sindiffusion.checkpoint import load_checkpoint
from sindiffusion.cli import main
from sindiffusion.runtime import EXIT_RESUMABLE
from tests.tiny import one_torch_thread, tiny_project  # noqa: F401

pytestmark = pytest.mark.e2e  # the end-to-end tier: `python -m pytest -m e2e`

RESUME = Path("results/img/train/resume/latest.pt")
LOSS = Path("results/img/train/loss.csv")
MODEL = Path("results/img/train/model.pt")


def _train(root: Path, argv: list[str]) -> None:
    os.chdir(root)
    sys.exit(main(["train", "--image", "img", "--no-progress", *argv]))


def _start(root: Path, *argv: str) -> multiprocessing.Process:
    proc = multiprocessing.get_context("fork").Process(target=_train, args=(root, list(argv)))
    proc.start()
    return proc


def _rows(root: Path) -> list[dict]:
    try:
        with open(root / LOSS, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def _wait_until_step(root: Path, proc: multiprocessing.Process, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _rows(root)
        if rows and int(rows[-1]["step"]) >= step:
            return
        assert proc.is_alive(), f"training ended (exit {proc.exitcode}) before step {step}"
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout} s")


def _same_weights(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca["step"] == cb["step"]
    for key in ("model", "ema"):
        for name in ca[key]:
            assert torch.equal(ca[key][name], cb[key][name]), f"{key}.{name}"


@pytest.fixture
def preprocessed(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path, train={"steps": 100_000, "log_every": 2, "save_every": 100_000})
    assert main(["preprocess", "--image", "img"]) == 0
    return tmp_path


def _straight(root: Path, dest: Path, steps: int) -> Path:
    """Train a copy of the preprocessed project ``steps`` steps in one go; returns its model.pt."""
    shutil.copytree(root / "results/img/preprocess", dest / "results/img/preprocess")
    shutil.copy(root / "params.yaml", dest / "params.yaml")
    cwd = os.getcwd()
    os.chdir(dest)
    try:
        assert main(["train", "--image", "img", "--no-progress", "--set", f"train.steps={steps}"]) == 0
    finally:
        os.chdir(cwd)
    return dest / MODEL


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT], ids=lambda s: s.name)
def test_signal_saves_the_current_step_and_resume_loses_nothing(preprocessed, tmp_path_factory, capfd, sig):
    root = preprocessed
    proc = _start(root)
    _wait_until_step(root, proc, 4)
    os.kill(proc.pid, sig)
    proc.join(60)
    assert proc.exitcode == (130 if sig == signal.SIGINT else EXIT_RESUMABLE)
    err = capfd.readouterr().err
    assert f"stopped by {sig.name} after step" in err and str(RESUME) in err and "run the same command" in err

    ckpt = load_checkpoint(root / RESUME)
    stopped = ckpt["step"]
    rows = _rows(root)
    assert int(rows[-1]["step"]) == stopped  # the losses since the last log are logged at the stop step
    assert ckpt["loss_history"] == rows
    assert not (root / MODEL).exists()

    # Snakemake deletes a failed job's outputs (loss.csv); the resume checkpoint restores the history.
    (root / LOSS).unlink()
    assert main(["train", "--image", "img", "--no-progress", "--set", f"train.steps={stopped + 2}"]) == 0
    assert f"resuming from {RESUME} at step {stopped}" in capfd.readouterr().err
    after = _rows(root)
    assert after[: len(rows)] == rows and int(after[-1]["step"]) == stopped + 2
    steps = [int(r["step"]) for r in after]
    assert steps == sorted(set(steps))
    _same_weights(root / MODEL, _straight(root, tmp_path_factory.mktemp("straight"), stopped + 2))


def test_sigkills_never_corrupt_and_lose_at_most_save_every(preprocessed, tmp_path_factory, capfd):
    """Ten SIGKILLs at random moments (some land inside a checkpoint write)."""
    root, total, save_every = preprocessed, 60, 2
    argv = ["--set", f"train.steps={total}", "--set", f"train.save_every={save_every}", "--set", "train.log_every=1"]
    rng = random.Random(9)
    resume_dir = root / RESUME.parent
    done = 0
    for kill in range(10):
        (root / LOSS).unlink(missing_ok=True)  # as Snakemake does; the restart restores it from the checkpoint
        proc = _start(root, *argv)
        _wait_until_step(root, proc, done + rng.randint(1, 2))
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        assert proc.exitcode == -signal.SIGKILL, f"kill {kill}: training ended before the kill"
        reached = int(_rows(root)[-1]["step"])
        ckpt = load_checkpoint(root / RESUME) if (root / RESUME).exists() else {"step": 0}
        assert reached - ckpt["step"] <= save_every, f"kill {kill}: lost {reached - ckpt['step']} steps"
        done = ckpt["step"]
        if kill == 4:  # a write killed half-way leaves a temp file; only that pattern is cleaned up
            (resume_dir / ".latest.pt.k1ll3d0x.tmp.pt").write_bytes(b"half a checkpoint")
            (resume_dir / "latest.pt.bak").write_bytes(b"the user's")
    assert main(["train", "--image", "img", "--no-progress", *argv]) == 0
    capfd.readouterr()
    assert sorted(p.name for p in resume_dir.iterdir()) == ["latest.pt", "latest.pt.bak"]
    assert not list((root / "results/img/train").glob(".*.tmp*"))
    assert [int(r["step"]) for r in _rows(root)] == list(range(1, total + 1))  # complete, no duplicates
    _same_weights(root / MODEL, _straight(root, tmp_path_factory.mktemp("straight"), total))


def test_stopped_training_run_is_killed_and_resumable_in_mlflow(preprocessed, monkeypatch, capfd):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    root = preprocessed
    uri = f"sqlite:///{root}/mlflow.db"
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    proc = _start(root, "--set", f"tracking.tracking_uri={uri}")
    _wait_until_step(root, proc, 2)
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(120)
    assert proc.exitcode == EXIT_RESUMABLE, capfd.readouterr().err
    stopped = load_checkpoint(root / RESUME)["step"]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sindiffusion-test")
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.`sindiffusion.stage` = 'train'")
    assert run.info.status == "KILLED"
    tags = run.data.tags
    assert tags["sindiffusion.resumable"] == "true" and tags["sindiffusion.stopped_at_step"] == str(stopped)
    assert tags["sindiffusion.resume_checkpoint"] == str(RESUME)
