"""Signals outside the training loop (issue 28, item 8): every stage stops on SIGTERM/SIGUSR1 from
start-up to exit with status 75 (Slurm's ``RequeueExit``), its MLflow run ended KILLED, and no
temporary output folder left behind (one a ``kill -9`` left is removed by the rerun).

Each stage runs in a forked child (a real process that gets a real signal, without paying the torch
import again); the signal is sent by the child itself at a chosen point, so the test is exact.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sindiffusion.cli import main
from sindiffusion.runtime import EXIT_RESUMABLE
from tests.tiny import edit_params, one_torch_thread  # noqa: F401

pytestmark = pytest.mark.e2e  # the end-to-end tier: `python -m pytest -m e2e`

EDITS = {"edits": {"img": [{"name": "wide", "kind": "outpaint", "left": 8}]}}  # the manipulate section
STAGES = {
    "preprocess": ["preprocess", "--image", "img"],
    "train": ["train", "--image", "img", "--set", "train.steps=6"],
    "sample": ["sample", "--image", "img", "--num", "1"],
    "evaluate": ["evaluate", "--image", "img"],
    "manipulate": ["manipulate", "--image", "img"],
}


def _child(root: Path, argv: list[str], patches: dict) -> None:
    os.chdir(root)
    for target, value in patches.items():  # applied in the child only
        module, name = target.rsplit(".", 1)
        setattr(sys.modules[module], name, value)
    sys.exit(main([*argv, "--no-progress"]))


def _run_child(root: Path, argv: list[str], **patches) -> int:
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(root, argv, patches))
    proc.start()
    proc.join(120)
    return proc.exitcode


def _signal_self(sig: int, then=None):
    """A stand-in that sends ``sig`` to its own process, then calls ``then`` (when it gets that far)."""

    def send(*args, **kwargs):
        os.kill(os.getpid(), sig)
        return then(*args, **kwargs) if then else "unknown"

    return send


def _stage_runs(root: Path, stage: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("sindiffusion-test")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`sindiffusion.stage` = '{stage}'")


@pytest.fixture
def tracked_project(trained_project, monkeypatch) -> Path:
    """:func:`trained_project` with samples and an edit, tracked into ``./mlflow.db``."""
    pytest.importorskip("mlflow")
    assert main(["sample", "--image", "img", "--num", "1", "--no-progress"]) == 0
    edit_params(trained_project / "params.yaml", replace={"manipulate": EDITS})
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained_project}/mlflow.db")
    return trained_project


@pytest.mark.parametrize("stage", STAGES)
def test_a_signal_inside_any_stage_exits_75_and_ends_its_run_killed(tracked_project, capfd, stage):
    """The signal lands when the stage has opened its MLflow run (while it logs its params)."""
    sig = signal.SIGUSR1 if stage in ("sample", "manipulate") else signal.SIGTERM
    code = _run_child(tracked_project, STAGES[stage], **{"sindiffusion.stages.common.git_commit": _signal_self(sig)})
    err = capfd.readouterr().err
    assert code == EXIT_RESUMABLE, err
    assert f"stopped by {sig.name}" in err and "run the same command again" in err and "Traceback" not in err, err
    (run,) = _stage_runs(tracked_project, stage)
    assert run.info.status == "KILLED"


def test_a_signal_during_the_final_save_of_training(tracked_project, capfd):
    """SIGTERM while train writes model.pt: exit 75, run KILLED, no model.pt and no temporary; the
    rerun finishes the training."""
    from sindiffusion.stages import train

    root = tracked_project
    (root / "results/img/train/model.pt").unlink()
    model = root / "results/img/train/model.pt"
    save = train.save_checkpoint

    def saving(path, state):
        return (_signal_self(signal.SIGTERM, save) if Path(path) == Path("results/img/train/model.pt") else save)(
            path, state
        )

    code = _run_child(root, STAGES["train"], **{"sindiffusion.stages.train.save_checkpoint": saving})
    err = capfd.readouterr().err
    assert code == EXIT_RESUMABLE, err
    assert not model.exists() and not list(model.parent.glob(".*.tmp*")), sorted(model.parent.iterdir())
    (run,) = _stage_runs(root, "train")
    assert run.info.status == "KILLED"
    assert main([*STAGES["train"], "--no-progress"]) == 0 and model.is_file()


def test_a_signal_while_sample_writes_leaves_the_old_samples_and_no_temporary(tracked_project, capfd):
    from sindiffusion.stages import sample

    root = tracked_project
    before = {p.name: p.read_bytes() for p in (root / "results/img/samples").iterdir()}
    code = _run_child(
        root,
        STAGES["sample"],
        **{"sindiffusion.stages.sample.save_grid": _signal_self(signal.SIGTERM, sample.save_grid)},
    )
    assert code == EXIT_RESUMABLE, capfd.readouterr().err
    assert {p.name: p.read_bytes() for p in (root / "results/img/samples").iterdir()} == before
    assert not list((root / "results/img").glob(".samples*"))
    (run,) = _stage_runs(root, "sample")
    assert run.info.status == "KILLED"


def test_the_temporary_folder_of_a_killed_sample_is_removed_by_the_rerun(trained_project, capfd):
    from sindiffusion.stages import sample

    root = trained_project
    code = _run_child(
        root,
        STAGES["sample"],
        **{"sindiffusion.stages.sample.save_grid": _signal_self(signal.SIGKILL, sample.save_grid)},
    )
    assert code == -signal.SIGKILL
    assert len(list((root / "results/img").glob(".samples.tmp-*"))) == 1  # what kill -9 leaves
    assert main([*STAGES["sample"], "--no-progress"]) == 0
    assert not list((root / "results/img").glob(".samples*"))
    assert (root / "results/img/samples/grid.png").is_file()


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (``SigCgt`` of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (sig - 1) & 1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
def test_a_signal_during_start_up_exits_75(trained_project, sig):
    """The signal lands while the command still imports its libraries (torch, MLflow): the
    handler is in place before them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sindiffusion", *STAGES["train"], "--no-progress"],
        cwd=trained_project,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not _catches(proc.pid, sig) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == EXIT_RESUMABLE, err
    assert f"stopped by {sig.name}" in err and "Traceback" not in err, err
    # stopped before the stage began, not by the training loop's handler (which prints "train: ...")
    assert not [line for line in err.splitlines() if line.startswith("train:")], err


def test_only_the_temporary_folders_of_gone_writers_are_removed(tmp_path):
    """A ``kill -9``'s temporary folder goes; one of a live writer, of another host, or a user's stays."""
    from sindiffusion.artifacts import remove_stale_dirs, this_host, writing_dir

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    names = {
        f".samples.tmp-{dead}@{this_host()}-abcd_123": False,
        f".samples.old-{dead}@{this_host()}": False,
        f".samples.tmp-{os.getpid()}@{this_host()}-abcd_123": True,  # a live writer
        f".samples.tmp-{dead}@elsewhere.example-abcd_123": True,  # another host's: cannot tell
        ".samples.tmp-mine": True,  # not a name this project makes
        f".other.tmp-{dead}@{this_host()}-abcd_123": True,  # another folder's
    }
    for name in names:
        (tmp_path / name).mkdir()
    with writing_dir(tmp_path / "samples") as out:
        (out / "x.txt").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["samples", *(n for n, keep in names.items() if keep)])
    assert remove_stale_dirs(tmp_path / "samples") == []
