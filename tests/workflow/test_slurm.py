"""`snakemake --profile slurm all` on a real one-node Slurm cluster (tests/support/slurm.py):
the tiny pipeline for two images goes through sbatch; a failing job makes snakemake fail."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from tests.tiny import RECIPES, tiny_project

from .helpers import PROFILES, snakemake

TINY_IMAGES = RECIPES["workflow"].images  # the projects' images

pytestmark = pytest.mark.cluster  # the cluster tier: `python -m pytest -m cluster`

# First status poll 1 s after submission (default 40 s) and then every second (default 10 s): a
# tiny job takes seconds, so the defaults would be most of the test's time. The test cluster's
# MinJobAge=600 keeps squeue as the status command (the profile's `slurm-status-command: squeue`).
FAST_POLL = (
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "1",
    "--slurm-keep-successful-logs",
)


STAGES = ("preprocess", "train", "sample", "evaluate", "manipulate")


def test_slurm_profile_runs_the_pipeline(slurm_cluster, tmp_path):
    root = tiny_project(tmp_path / "project", "workflow").root
    env = slurm_cluster.env
    env.pop("SNAKEMAKE_PROFILE", None)
    env["SINDIFFUSION_TRACKING"] = "off"
    profile = str(PROFILES / "slurm")

    t0 = time.monotonic()
    res = snakemake(root, "--profile", profile, *FAST_POLL, "all", env=env, timeout=900, log_name="snakemake-slurm.log")
    print(f"snakemake --profile slurm all (2 images x 5 stages): {time.monotonic() - t0:.1f} s")
    assert res.returncode == 0, res.stdout[-6000:]

    # ten jobs (2 images x preprocess/train/sample/evaluate/manipulate), each submitted with sbatch
    submitted = re.findall(
        r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/(\w+)/\d+\.log", res.stdout
    )
    assert sorted((rule, image) for _, rule, image in submitted) == sorted(
        (rule, image) for rule in STAGES for image in TINY_IMAGES
    ), res.stdout[-6000:]
    ids = [jid for jid, _, _ in submitted]
    for jid, rule, _ in submitted:
        info = slurm_cluster.run("scontrol", "show", "job", jid)
        assert "JobState=COMPLETED" in info, info
        assert "Partition=debug" in info, info
        if rule in ("train", "sample", "manipulate"):  # resources from workflow/rules/common.smk
            assert re.search(r"TresPerJob=gres[:/]gpu[:=]1", info), info
            assert "NumCPUs=2" in info, info
    logs = list((root / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert {p.stem for p in logs} >= set(ids), logs

    for image in TINY_IMAGES:
        for rel in (
            "preprocess/image.png",
            "train/model.pt",
            "train/loss.csv",
            "train/metrics.json",
            "samples/grid.png",
            "samples/sample_001.png",
            "evaluate/metrics.json",
            "manipulate/manipulate.json",
        ):
            assert (root / "results" / image / rel).is_file(), rel
        for stage in STAGES:
            assert (root / "logs" / image / f"{stage}.log").is_file()

    # a corrupt image: its preprocess job fails inside Slurm, and so does snakemake
    (root / "data" / "images" / "broken.png").write_bytes(b"this is not a PNG file")
    t1 = time.monotonic()
    bad = snakemake(  # --retries 0: the profile's 2 retries of a job that always fails only cost time
        root,
        "--profile",
        profile,
        *FAST_POLL,
        "--retries",
        "0",
        "all",
        env=env,
        timeout=600,
        log_name="snakemake-slurm-fail.log",
    )
    print(f"snakemake --profile slurm all (failing job): {time.monotonic() - t1:.1f} s")
    assert bad.returncode != 0, bad.stdout[-5000:]
    assert re.search(r"SLURM-job '\d+' failed", bad.stdout), bad.stdout[-5000:]
    assert "sindiffusion preprocess: error" in (root / "logs" / "broken" / "preprocess.log").read_text()
    assert not (root / "results" / "broken" / "preprocess" / "image.png").exists()


def _wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {proc.returncode}) while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_preempted_training_is_requeued_and_resumes(slurm_cluster, tmp_path):
    """`scontrol requeue` of a running train job (what a preemption with PreemptMode=REQUEUE does):
    Slurm sends SIGTERM, training writes its resume checkpoint at the current step and exits; the
    requeued job (started at once: Slurm would hold it ~2 min) resumes with no step lost and the loss
    history complete, although Snakemake deleted the failed job's loss.csv."""
    import subprocess
    import sys

    # a 30-second training (wall clock, whatever the machine's speed), logging every 5 steps
    root = tiny_project(
        tmp_path / "requeue",
        "workflow",
        images={"tiny_a": (40, 48)},
        train={"steps": 1_000_000, "max_minutes": 0.5, "log_every": 5, "save_every": 1_000_000},
    ).root
    env = slurm_cluster.env
    env.pop("SNAKEMAKE_PROFILE", None)
    env["SINDIFFUSION_TRACKING"] = "off"
    loss = root / "results/tiny_a/train/loss.csv"
    log = root / "snakemake-requeue.log"
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--profile",
                str(PROFILES / "slurm"),
                *FAST_POLL,
                "results/tiny_a/train/metrics.json",
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait_for(
                lambda: loss.is_file() and len(loss.read_text().splitlines()) >= 3,
                300,
                "the train job's first loss rows",
                proc,
            )
            jid = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_train/", log.read_text())[-1]
            slurm_cluster.run("scontrol", "requeue", jid)
            # Slurm holds a requeued job ~2 min before it may start again; once the stopped job is
            # back in the queue, let it start now (the requeue path under test is the same).
            _wait_for(
                lambda: "JobState=PENDING" in slurm_cluster.run("scontrol", "show", "job", jid),
                120,
                "the requeued train job back in the queue",
                proc,
            )
            slurm_cluster.run("scontrol", "update", f"JobId={jid}", "StartTime=now")
            assert proc.wait(timeout=600) == 0, log.read_text()[-6000:]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
    print(f"snakemake --profile slurm (train requeued once): {time.monotonic() - t0:.1f} s")

    info = slurm_cluster.run("scontrol", "show", "job", jid)
    assert "JobState=COMPLETED" in info and "Restarts=1" in info and "Requeue=1" in info, info
    metrics = json.loads((root / "results/tiny_a/train/metrics.json").read_text())
    stopped = metrics["resumed_from_step"]
    assert stopped > 0, metrics
    assert f"at step {stopped}" in (root / "logs/tiny_a/train.log").read_text()
    steps = [int(line.split(",")[0]) for line in loss.read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and stopped in steps and steps[-1] == metrics["steps"]
    assert set(range(5, steps[-1] + 1, 5)) <= set(steps)  # nothing lost before or after the requeue
