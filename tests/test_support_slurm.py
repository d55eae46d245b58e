"""End to end: the repository's Snakemake slurm profile on a one-node Slurm cluster.

Runs ``snakemake --profile <repo>/workflow/profiles/slurm all`` on a throwaway
Snakefile with a CPU rule and a GPU rule (``resources: gpu=1``), then a rule
that fails. Needs root, slurm-wlm and munge (``sudo .ci/install-system.sh``).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# The slurm_cluster fixture comes from tests/conftest.py (pytest_plugins): importing it here
# would create a second session-scoped cluster.
from tests.support.fixtures import REPO_ROOT

pytestmark = pytest.mark.cluster  # the cluster tier: `python -m pytest -m cluster`

PROFILE = REPO_ROOT / "workflow" / "profiles" / "slurm"

SNAKEFILE = textwrap.dedent(
    """
    rule all:
        input: "out/cpu.txt", "out/gpu.txt"

    rule cpu:
        output: "out/cpu.txt"
        shell: "echo SLURM_JOB_ID=${{SLURM_JOB_ID:-none}} > {output}"

    rule gpu:
        output: "out/gpu.txt"
        resources: gpu=1
        shell:
            "echo SLURM_JOB_ID=${{SLURM_JOB_ID:-none}} > {output}; "
            "echo CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES:-unset}} >> {output}"

    rule fail:
        output: "out/fail.txt"
        shell: "echo about to fail; exit 3"
    """
)

# The plugin's first status poll 1 s after submission (default 40 s), then every second (default
# 10 s); the test cluster keeps MinJobAge=600 >= 3 x this, so squeue stays the status command.
FAST_POLL = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1"]


def _snakemake(workdir: Path, env: dict, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(PROFILE),
        *FAST_POLL,
        "--slurm-keep-successful-logs",
        "--verbose",
        *args,
    ]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # lets snakemake scancel its jobs
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"snakemake timed out after {timeout}s:\n{out[-5000:]}")
    (workdir / f"snakemake-{args[-1]}.log").write_text(out)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


def test_slurm_profile_runs_jobs_through_sbatch(slurm_cluster, tmp_path):
    env = slurm_cluster.env
    env.pop("SNAKEMAKE_PROFILE", None)
    (tmp_path / "Snakefile").write_text(SNAKEFILE)

    t0 = time.monotonic()
    res = _snakemake(tmp_path, env, "all")
    elapsed = time.monotonic() - t0
    print(f"snakemake --profile slurm all: {elapsed:.1f}s")
    assert res.returncode == 0, res.stdout[-5000:]

    # jobs were submitted with sbatch and got Slurm job ids
    ids = re.findall(r"has been submitted with SLURM jobid (\d+)", res.stdout)
    ids = sorted(set(ids))
    assert len(ids) == 2, res.stdout[-5000:]
    sbatch_calls = [ln for ln in res.stdout.splitlines() if "sbatch call:" in ln]
    assert len(set(sbatch_calls)) == 2
    gpu_call = [c for c in sbatch_calls if "rule_gpu" in c or "--gpus" in c]
    assert gpu_call and all("--gpus=1" in c for c in gpu_call), sbatch_calls
    assert all("-p debug" in c or "--partition" in c for c in sbatch_calls), sbatch_calls

    # outputs exist, were written inside Slurm jobs, the GPU job saw the fake GPU
    cpu = (tmp_path / "out/cpu.txt").read_text()
    gpu = (tmp_path / "out/gpu.txt").read_text()
    job_ids = set(re.findall(r"SLURM_JOB_ID=(\d+)", cpu + gpu))
    assert job_ids == set(ids), (cpu, gpu, ids)
    assert "CUDA_VISIBLE_DEVICES=0" in gpu

    # Slurm itself knows the jobs (MinJobAge keeps them) and the GPU request
    for jid in ids:
        info = slurm_cluster.run("scontrol", "show", "job", jid)
        assert "JobState=COMPLETED" in info, info
    gpu_jid = re.search(r"SLURM_JOB_ID=(\d+)", gpu).group(1)
    assert re.search(r"TresPerJob=gres[:/]gpu[:=]1", slurm_cluster.run("scontrol", "show", "job", gpu_jid))

    logs = list((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert {p.stem for p in logs} >= set(ids), logs

    # a failing rule makes snakemake fail
    t1 = time.monotonic()
    bad = _snakemake(tmp_path, env, "--retries", "0", "fail")  # the profile's retries only cost time here
    print(f"snakemake --profile slurm fail: {time.monotonic() - t1:.1f}s")
    assert bad.returncode != 0, bad.stdout[-5000:]
    assert re.search(r"SLURM-job '\d+' failed", bad.stdout), bad.stdout[-5000:]
    assert not (tmp_path / "out/fail.txt").exists()
