"""A real ``mlflow server`` for tests (SQLite backend, local artifact store).

Usage::

    from tests.support.mlflow_server import MlflowServer

    with MlflowServer(tmp_dir) as server:
        mlflow.set_tracking_uri(server.uri)   # e.g. http://127.0.0.1:54321
        ...

The server runs in its own process group (it forks uvicorn workers) and is
stopped by that group's id on exit; nothing is killed by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

__all__ = ["MlflowServer", "mlflow_available", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _mlflow_cmd() -> list[str]:
    # Prefer the interpreter running the tests, so server and client match.
    try:
        import mlflow  # noqa: F401

        return [sys.executable, "-m", "mlflow"]
    except ImportError:
        exe = shutil.which("mlflow")
        if exe:
            return [exe]
        raise


def mlflow_available() -> tuple[bool, str]:
    """``(True, "")`` if an mlflow server can be started, else ``(False, reason)``."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        if shutil.which("mlflow") is None:
            return False, "mlflow is not installed"
    return True, ""


class MlflowServer:
    """Context manager around ``mlflow server``.

    Attributes: ``uri`` (``http://127.0.0.1:<port>``), ``port``, ``root``,
    ``backend_store_uri``, ``artifacts_dir``, ``log_path``.
    """

    def __init__(
        self,
        root: os.PathLike | str,
        *,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.backend_store_uri = f"sqlite:///{self.root / 'mlflow.db'}"
        self.artifacts_dir = self.root / "artifacts"
        self.log_path = self.root / "mlflow-server.log"
        self._proc: Optional[subprocess.Popen] = None

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _health(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                return r.status == 200 and r.read().decode().strip().upper().startswith("OK")
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def start(self) -> "MlflowServer":
        if self._proc is not None:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(exist_ok=True)
        if self.port is None:
            self.port = free_port(self.host)
        env = dict(os.environ)
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # starts in ~8 s, not ~30
        env.pop("MLFLOW_TRACKING_URI", None)
        argv = _mlflow_cmd() + [
            "server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(self.artifacts_dir),
            "--workers",
            "1",
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop all workers at once
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"mlflow server exited with {rc}:\n{self.log_tail()}")
            if self._health():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {self.start_timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session=True: pgid == pid
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # leader gone; give the workers of the group a moment too
            time.sleep(0.2)
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
