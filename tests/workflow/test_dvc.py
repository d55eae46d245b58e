"""DVC: `dvc repro` runs the tiny pipeline; push/pull/checkout restore checkpoints byte-identical;
`dvc commit` records checkpoints that Snakemake produced. In temporary git repositories."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import PROFILES, clean_env, make_project, run, snakemake

pytestmark = [
    pytest.mark.e2e,  # the end-to-end tier: `python -m pytest -m e2e`
    pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None, reason="dvc or git not installed"),
]

IMAGE = "tiny_a"
CKPT = f"results/{IMAGE}/train/model.pt"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_dvc_repo(root: Path) -> None:
    env = clean_env()
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "ci@example.com"],
        ["git", "config", "user.name", "CI"],
        ["dvc", "init", "-q"],
        ["dvc", "add", "-q", "data/images"],
    ):
        res = run(cmd, root, env)
        assert res.returncode == 0, res.stdout
    subprocess.run(["git", "add", "-A"], cwd=root, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "tiny pipeline"], cwd=root, check=True, capture_output=True)


def _dvc(root: Path, *args: str, timeout: float = 600) -> str:
    res = run(["dvc", *args], root, clean_env(), timeout=timeout)
    assert res.returncode == 0, res.stdout[-5000:]
    return res.stdout


def test_dvc_repro_push_pull_checkout(tmp_path):
    root = make_project(tmp_path / "repo", images={IMAGE: (40, 48)}, list_images=True, with_src=True)
    _git_dvc_repo(root)

    out = _dvc(root, "repro")
    for stage in ("preprocess", "train", "sample"):
        assert f"Running stage '{stage}@{IMAGE}'" in out, out
    ckpt = root / CKPT
    assert ckpt.is_file() and (root / f"results/{IMAGE}/samples/grid.png").is_file()
    lock = (root / "dvc.lock").read_text()
    assert CKPT in lock and "steps: 15" in lock  # outs hashed, stage params recorded
    metrics = json.loads(_dvc(root, "metrics", "show", "--json"))
    assert "final_loss" in json.dumps(metrics)
    assert "Data and pipelines are up to date" in _dvc(root, "status")
    digest = _sha(ckpt)

    # dvc checkout restores a deleted checkpoint from the cache
    ckpt.unlink()
    _dvc(root, "checkout")
    assert _sha(ckpt) == digest

    # push to a local remote; drop the checkpoint and the cache; pull restores it
    remote = (tmp_path / "remote").resolve()
    _dvc(root, "remote", "add", "-d", "local", str(remote))
    _dvc(root, "push")
    assert any(remote.rglob("*")), "nothing was pushed"
    ckpt.unlink()
    shutil.rmtree(root / ".dvc" / "cache")
    _dvc(root, "pull")
    assert _sha(ckpt) == digest
    assert "Data and pipelines are up to date" in _dvc(root, "status")


def test_dvc_commit_records_snakemake_outputs(tmp_path):
    root = make_project(tmp_path / "repo", images={IMAGE: (40, 48)}, list_images=True, with_src=True)
    _git_dvc_repo(root)
    res = snakemake(root, "--profile", str(PROFILES / "local"), "--cores", "2", "all", timeout=600)
    assert res.returncode == 0, res.stdout[-5000:]
    digest = _sha(root / CKPT)
    samples_before = sorted(p.name for p in (root / f"results/{IMAGE}/samples").iterdir())

    _dvc(root, "commit", "-f")
    assert CKPT in (root / "dvc.lock").read_text()
    assert "Data and pipelines are up to date" in _dvc(root, "status")
    out = _dvc(root, "repro")  # nothing to run: the Snakemake outputs are recorded
    assert "Running stage" not in out, out
    assert _sha(root / CKPT) == digest
    assert sorted(p.name for p in (root / f"results/{IMAGE}/samples").iterdir()) == samples_before

    remote = (tmp_path / "remote").resolve()
    _dvc(root, "remote", "add", "-d", "local", str(remote))
    _dvc(root, "push")
    (root / CKPT).unlink()
    shutil.rmtree(root / ".dvc" / "cache")
    _dvc(root, "pull")
    assert _sha(root / CKPT) == digest
