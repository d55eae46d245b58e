"""Shared helpers of the workflow tests: run commands (Snakemake, DVC) in a project and read their output.

The projects themselves come from the one builder, ``tiny_project(root, "workflow")`` of :mod:`tests.tiny`:
a copy of what a run needs (``workflow/``, ``dvc.yaml``, ...) in a temporary directory, a tiny params.yaml
(40-48 px images, an 8-channel 2-level UNet, 15 training steps, 2 samples of 10 DDIM steps) and two
small synthetic images.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.tiny import REPO_ROOT

PROFILES = REPO_ROOT / "workflow" / "profiles"


def clean_env(**extra: str | None) -> dict:
    """os.environ without profile/tracking settings of the caller; ``extra`` sets (None: unsets)."""
    env = dict(os.environ)
    for key in ("SNAKEMAKE_PROFILE", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        env.pop(key, None)
    env.setdefault("SINDIFFUSION_TRACKING", "off")
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(
    cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 300, log: Path | None = None
) -> subprocess.CompletedProcess:
    """Run a command, return its combined output; SIGINT (then kill) on timeout."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as err:
        proc.send_signal(signal.SIGINT)  # snakemake cancels its Slurm jobs on SIGINT
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        raise AssertionError(f"{' '.join(cmd)} timed out after {timeout}s:\n{out[-5000:]}") from err
    elapsed = time.monotonic() - t0
    if log is not None:
        log.write_text(f"$ {' '.join(cmd)}\n# {elapsed:.1f} s, rc={proc.returncode}\n{out}")
    print(f"[{elapsed:6.1f} s] rc={proc.returncode} {' '.join(cmd)}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, None)


def snakemake(
    root: Path, *args: str, env: dict | None = None, timeout: float = 300, log_name: str | None = None
) -> subprocess.CompletedProcess:
    log = root / log_name if log_name else None
    return run([sys.executable, "-m", "snakemake", *args], root, env, timeout, log)


def dry_run_jobs(output: str) -> list[dict]:
    """Parse ``snakemake -n -p`` output into ``[{rule, output: [...], shell}]``."""
    jobs: list[dict] = []
    job: dict | None = None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            job = {"rule": m.group(1), "output": [], "shell": None}
            jobs.append(job)
            continue
        if job is None:
            continue
        s = line.strip()
        if s.startswith("output:"):
            job["output"] = [x.strip() for x in s[len("output:") :].split(",") if x.strip()]
        elif s.startswith("Shell command:"):
            job["shell"] = s[len("Shell command:") :].strip()
    return jobs
