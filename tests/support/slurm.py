"""A throwaway one-node Slurm cluster on localhost for end-to-end tests.

The recipe (one that worked on this kind of machine): Debian 12's ``slurm-wlm`` 22.05 + ``munge``,
run as root without systemd, no accounting (no slurmdbd), one fake GPU.

Usage::

    from tests.support.slurm import SlurmCluster, slurm_available

    ok, reason = slurm_available()
    with SlurmCluster(tmp_dir) as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], check=True)

Every daemon this module starts runs in the foreground (``-D`` / ``-F``) as a
direct child (``subprocess.Popen``) and is stopped by that PID: no ``pkill``.
munged is only started (and later stopped) when no munged is answering yet.

The Slurm commands (``sbatch``, ``squeue``, ...) read ``/etc/slurm/slurm.conf``,
so the cluster writes its configuration there; any existing ``slurm.conf`` and
``gres.conf`` are backed up into the state directory and restored on exit.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

__all__ = ["SlurmCluster", "slurm_available", "SLURM_CONF_DIR"]

SLURM_CONF_DIR = Path("/etc/slurm")
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_REQUIRED_COMMANDS = (
    "sbatch",
    "squeue",
    "sinfo",
    "scontrol",
    "scancel",
    "slurmctld",
    "slurmd",
    "munged",
    "munge",
    "unmunge",
)


def _which(cmd: str) -> Optional[str]:
    """``shutil.which`` that also looks in the sbin directories."""
    found = shutil.which(cmd)
    if found:
        return found
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    return shutil.which(cmd, path=path)


def slurm_available() -> tuple[bool, str]:
    """Can this machine host a :class:`SlurmCluster`?

    Returns ``(True, "")`` or ``(False, reason)``; use it for pytest skips::

        ok, reason = slurm_available()
        pytestmark = pytest.mark.skipif(not ok, reason=reason)
    """
    if os.name != "posix" or not Path("/proc/meminfo").exists():
        return False, "Slurm test cluster needs Linux"
    missing = [c for c in _REQUIRED_COMMANDS if _which(c) is None]
    if missing:
        return False, ("Slurm/munge commands missing: " + ", ".join(missing) + " (run `sudo .ci/install-system.sh`)")
    if os.geteuid() != 0:
        return False, "Slurm test cluster must run as root (slurmd/munged setup)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return False, "user 'munge' does not exist (reinstall the munge package)"
    key = Path("/etc/munge/munge.key")
    if not key.exists() and _which("mungekey") is None:
        return False, "no /etc/munge/munge.key and no mungekey to create one"
    return True, ""


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("MemTotal not found in /proc/meminfo")


def _real_memory_mb(margin_mb: int) -> int:
    """RealMemory for slurm.conf: MemTotal minus a margin.

    slurmd marks the node invalid if RealMemory exceeds what it measures,
    so stay clearly below MemTotal (at least ``margin_mb``, at least 5 %).
    """
    total = _mem_total_mb()
    return max(256, total - max(margin_mb, total // 20))


def _munge_works(env: dict) -> bool:
    try:
        cred = subprocess.run(
            [_which("munge") or "munge", "-n"],
            capture_output=True,
            timeout=10,
            env=env,
        )
        if cred.returncode != 0:
            return False
        check = subprocess.run(
            [_which("unmunge") or "unmunge"],
            input=cred.stdout,
            capture_output=True,
            timeout=10,
            env=env,
        )
        return check.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class SlurmCluster:
    """Context manager running slurmctld + slurmd (+ munged if needed).

    Parameters
    ----------
    state_dir:
        Directory for pid files, logs, spool and state (created).
    partition:
        Name of the single (default) partition.
    mem_margin_mb:
        How much less than MemTotal to declare as the node's RealMemory.
    start_timeout:
        Seconds to wait for the node to become ``idle`` in ``sinfo``.
    min_job_age:
        Slurm ``MinJobAge``; the Snakemake plugin uses ``squeue`` for status
        only when this is >= 3 x its initial status-check interval.

    Attributes after start: ``partition``, ``cpus``, ``real_memory_mb``,
    ``state_dir``, ``conf_path``, ``slurmctld_log``, ``slurmd_log``.
    """

    def __init__(
        self,
        state_dir: os.PathLike | str,
        *,
        partition: str = "debug",
        mem_margin_mb: int = 1024,
        start_timeout: float = 60.0,
        min_job_age: int = 600,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.partition = partition
        self.mem_margin_mb = mem_margin_mb
        self.start_timeout = start_timeout
        self.min_job_age = min_job_age
        self.cpus = os.cpu_count() or 1
        self.real_memory_mb = _real_memory_mb(mem_margin_mb)
        self.conf_path = SLURM_CONF_DIR / "slurm.conf"
        self.gres_path = SLURM_CONF_DIR / "gres.conf"
        self.slurmctld_log = self.state_dir / "slurmctld.log"
        self.slurmd_log = self.state_dir / "slurmd.log"
        self._procs: dict[str, subprocess.Popen] = {}
        self._backups: dict[Path, Optional[Path]] = {}
        self._started = False

    # ------------------------------------------------------------------ utils
    @property
    def env(self) -> dict:
        """Environment for Slurm commands (sbin on PATH, no SLURM_CONF)."""
        env = dict(os.environ)
        parts = env.get("PATH", "").split(os.pathsep)
        env["PATH"] = os.pathsep.join(parts + [d for d in _SBIN_DIRS if d not in parts])
        env.pop("SLURM_CONF", None)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """Run a Slurm command (e.g. ``cluster.run("squeue")``), return stdout."""
        res = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def node_state(self) -> str:
        try:
            out = self.run("sinfo", "-h", "-N", "-o", "%t", check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return ""
        return out.strip()

    def logs(self, tail: int = 40) -> str:
        """Last lines of the daemon logs, for error messages."""
        chunks = []
        for log in (self.slurmctld_log, self.slurmd_log, self.state_dir / "munged.log"):
            if log.exists():
                lines = log.read_text(errors="replace").splitlines()[-tail:]
                chunks.append(f"--- {log} ---\n" + "\n".join(lines))
        return "\n".join(chunks)

    # ----------------------------------------------------------------- config
    def slurm_conf(self) -> str:
        s = self.state_dir
        return f"""\
# Written by tests/support/slurm.py (SlurmCluster); restored on exit.
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd.pid
SlurmdSpoolDir={s}/slurmd
StateSaveLocation={s}/state
SlurmctldLogFile={self.slurmctld_log}
SlurmdLogFile={self.slurmd_log}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
MinJobAge={self.min_job_age}
KillWait=5
GresTypes=gpu
NodeName=localhost CPUs={self.cpus} RealMemory={self.real_memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={self.partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""

    @staticmethod
    def gres_conf() -> str:
        return (
            "# Written by tests/support/slurm.py (SlurmCluster): one fake GPU.\n"
            "AutoDetect=off\n"
            "Name=gpu File=/dev/null Count=1\n"
        )

    def _install_config(self) -> None:
        SLURM_CONF_DIR.mkdir(parents=True, exist_ok=True)
        backup_dir = self.state_dir / "etc-backup"
        backup_dir.mkdir(exist_ok=True)
        for path, text in ((self.conf_path, self.slurm_conf()), (self.gres_path, self.gres_conf())):
            if path not in self._backups:
                if path.exists() or path.is_symlink():
                    dst = backup_dir / path.name
                    shutil.copy2(path, dst, follow_symlinks=False)
                    self._backups[path] = dst
                else:
                    self._backups[path] = None
            path.write_text(text)
        # a copy next to the logs, for debugging
        (self.state_dir / "slurm.conf").write_text(self.slurm_conf())

    def _restore_config(self) -> None:
        for path, backup in self._backups.items():
            try:
                if path.exists() or path.is_symlink():
                    path.unlink()
                if backup is not None:
                    shutil.copy2(backup, path, follow_symlinks=False)
            except OSError:
                pass
        self._backups.clear()

    # ---------------------------------------------------------------- daemons
    def _spawn(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        log = open(self.state_dir / f"{name}.stdout", "ab")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # keep terminal SIGINTs away
                **kw,
            )
        finally:
            log.close()
        self._procs[name] = proc
        return proc

    def _start_munge(self) -> None:
        if _munge_works(self.env):
            return  # some munged is already serving; leave it alone
        key = Path("/etc/munge/munge.key")
        munge = pwd.getpwnam("munge")
        if not key.exists():
            subprocess.run([_which("mungekey") or "mungekey", "--create"], check=True)
        os.chown(key, munge.pw_uid, munge.pw_gid)
        os.chmod(key, 0o400)
        for d in (Path("/run/munge"), Path("/var/lib/munge"), Path("/var/log/munge")):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, munge.pw_uid, munge.pw_gid)
        # A stale socket/pidfile from a killed munged makes munged refuse to start.
        for stale in (
            Path("/run/munge/munge.socket.2"),
            Path("/run/munge/munge.socket.2.lock"),
            Path("/run/munge/munged.pid"),
        ):
            if stale.exists():
                stale.unlink()
        self._spawn(
            "munged",
            [_which("munged") or "/usr/sbin/munged", "-F", "--force"],
            user=munge.pw_uid,
            group=munge.pw_gid,
            extra_groups=[],
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if _munge_works(self.env):
                return
            if self._procs["munged"].poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("munged did not start:\n" + self.logs())

    def _already_running(self) -> bool:
        res = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=self.env, timeout=15)
        return res.returncode == 0 and "UP" in res.stdout

    def start(self) -> "SlurmCluster":
        if self._started:
            return self
        ok, reason = slurm_available()
        if not ok:
            raise RuntimeError(f"cannot start a Slurm test cluster: {reason}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "slurmd").mkdir(exist_ok=True)
        (self.state_dir / "state").mkdir(exist_ok=True)
        self._started = True
        try:
            self._start_munge()
            if self.conf_path.exists() and self._already_running():
                raise RuntimeError(
                    "a slurmctld is already answering on this machine (not started by "
                    "SlurmCluster); stop it first or run the tests elsewhere"
                )
            self._install_config()
            # -D: foreground (we own the PID); -c: start without old job state
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c"])
            time.sleep(0.5)
            self._spawn("slurmd", [_which("slurmd"), "-D", "-N", "localhost"])
            self._wait_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        state = ""
        while time.monotonic() < deadline:
            for name in ("slurmctld", "slurmd"):
                proc = self._procs.get(name)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")
            state = self.node_state()
            if state.startswith("idle") or state.startswith("mix"):
                return
            if state.startswith(("drain", "down", "inval")):
                # ReturnToService=2 normally resumes it; nudge once
                self.run("scontrol", "update", "NodeName=localhost", "State=RESUME", check=False)
            time.sleep(0.3)
        raise RuntimeError(f"Slurm node not idle after {self.start_timeout}s (state {state!r}):\n" + self.logs())

    @staticmethod
    def _terminate(proc: subprocess.Popen, timeout: float = 15) -> None:
        if proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        if not self._started:
            return
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            # our own cluster: cancel whatever is still queued or running there
            try:
                self.run("scancel", "--full", "--partition", self.partition, check=False, timeout=15)
                ids = self.run("squeue", "-h", "-o", "%i", check=False, timeout=15).split()
                if ids:
                    self.run("scancel", *ids, check=False, timeout=15)
                    time.sleep(1)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                self._terminate(proc)
        self._restore_config()
        self._started = False

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"SlurmCluster(state_dir={str(self.state_dir)!r}, partition={self.partition!r}, "
            f"cpus={self.cpus}, real_memory_mb={self.real_memory_mb})"
        )
