"""DVC: `dvc repro` runs the tiny pipeline; push/pull/checkout restore checkpoints byte-identical;
`dvc commit` records checkpoints that Snakemake produced; `dvc exp run --set-param` experiments are
listed by `dvc exp show` and compared by `dvc plots diff`. In temporary git repositories."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tiny import tiny_project

from .helpers import PROFILES, clean_env, run, snakemake

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
    root = tiny_project(tmp_path / "repo", "workflow", images={IMAGE: (40, 48)}, list_images=True, with_src=True).root
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
    root = tiny_project(tmp_path / "repo", "workflow", images={IMAGE: (40, 48)}, list_images=True, with_src=True).root
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


def _experiments(show: list) -> dict[str, dict]:
    """name -> row of each experiment in `dvc exp show --json` (the baseline rows hold them)."""
    found = {}
    for row in show:
        for exp in row.get("experiments") or []:
            for rev in exp["revs"]:
                found[rev["name"]] = rev
    return found


def test_dvc_experiments_compare_train_steps(tmp_path):
    """docs/pipeline.md "DVC experiments": two `dvc exp run --set-param train.steps=N`, then `dvc exp
    show` lists both with their params and metrics, `dvc plots diff` draws both loss curves and both
    sample grids (dvc.yaml's top-level plot), and the top-level artifact of a tagged experiment is
    its model. `sample` is the target: the stages a changed train.steps reruns, without evaluate and
    manipulate (their metrics come from the other tests of this tier), to keep the tier fast."""
    root = tiny_project(tmp_path / "repo", "workflow", images={IMAGE: (40, 48)}, list_images=True, with_src=True).root
    _git_dvc_repo(root)
    steps = {"steps-5": 5, "steps-10": 10}
    for name, n in steps.items():
        out = _dvc(root, "exp", "run", "-n", name, "--set-param", f"train.steps={n}", "sample")
        assert f"Ran experiment(s): {name}" in out, out
    # the workspace holds the last experiment
    assert json.loads((root / f"results/{IMAGE}/train/metrics.json").read_text())["steps"] == 10

    exps = _experiments(json.loads(_dvc(root, "exp", "show", "--json")))
    assert set(steps) <= set(exps), sorted(exps)
    train_metrics = f"results/{IMAGE}/train/metrics.json"
    samples_meta = f"results/{IMAGE}/samples/samples.json"  # dvc.yaml's top-level metric
    for name, n in steps.items():
        data = exps[name]["data"]
        assert data["params"]["params.yaml"]["data"]["train"]["steps"] == n, name
        metrics = data["metrics"]
        assert metrics[train_metrics]["data"]["steps"] == n, name
        assert isinstance(metrics[train_metrics]["data"]["final_loss"], float), name
        # the samples of each experiment come from its own model
        assert metrics[samples_meta]["data"]["checkpoint_step"] == n, name
        assert metrics[samples_meta]["data"]["seconds_per_sample"] > 0, name
    # the table users read: one row per experiment, its train.steps and final loss
    table = _dvc(root, "exp", "show", "--csv", "--only-changed")
    rows = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(table)) if r["Experiment"]}
    assert set(steps) <= set(rows), table
    column = next(c for c in rows["steps-5"] if c.split(":")[-1] == "train.steps")  # prefixed only when ambiguous
    assert {name: rows[name][column] for name in steps} == {"steps-5": "5", "steps-10": "10"}, table
    # in the workspace, train resumes from results/<image>/train/resume/latest.pt when only the step
    # count changed: steps-10 continued steps-5's training (docs/pipeline.md: `--temp` runs apart)
    resumed = {name: exps[name]["data"]["metrics"][train_metrics]["data"]["resumed_from_step"] for name in steps}
    assert resumed == {"steps-5": 0, "steps-10": 5}, resumed

    # dvc plots diff: each experiment's loss curve (stage plot) and sample grid (top-level plot)
    plots = json.loads(_dvc(root, "plots", "diff", *steps, "--json"))["data"]
    loss = plots[f"results/{IMAGE}/train/loss.csv"]
    values = [v for p in loss for v in p["content"]["data"]["values"]]
    assert {name: sorted(int(v["step"]) for v in values if v["rev"] == name) for name in steps} == {
        "steps-5": [5],
        "steps-10": [5, 10],
    }, values
    grids = {g["revisions"][0]: Path(g["url"]) for g in plots[f"results/{IMAGE}/samples/grid.png"]}
    assert sorted(grids) == sorted(steps), grids
    assert all(p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in grids.values()), grids
    assert grids["steps-5"].read_bytes() != grids["steps-10"].read_bytes()  # two models, two grids

    # dvc.yaml's top-level artifact: a git tag makes an experiment's model a version of it
    rev = exps["steps-5"]["rev"]
    res = run(["git", "tag", "-a", f"{IMAGE}-model@v1.0.0", rev, "-m", "steps-5"], root, clean_env())
    assert res.returncode == 0, res.stdout
    got = tmp_path / "model-v1.pt"
    _dvc(root, "artifacts", "get", ".", f"{IMAGE}-model", "-o", str(got))
    lock = yaml.safe_load(run(["git", "show", f"{rev}:dvc.lock"], root, clean_env()).stdout)
    (expected,) = [o for o in lock["stages"][f"train@{IMAGE}"]["outs"] if o["path"] == CKPT]
    assert hashlib.md5(got.read_bytes()).hexdigest() == expected["md5"]
