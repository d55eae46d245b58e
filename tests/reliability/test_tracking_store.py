"""The tracking store under stress (issue 9, items 2 and 6): parallel first use of a fresh SQLite
file, a server that accepts connections and never answers, and one warning per outage."""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time
import warnings

import pytest

from sindiffusion import tracking

N_PARALLEL = 8


def _stage(uri: str, index: int, start: multiprocessing.Event) -> None:
    """What every stage does with tracking: open its run, log params and a metric history, finish."""
    start.wait(30)
    with tracking.stage_run(
        "train", f"img{index % 4}", enabled=True, experiment="parallel", uri=uri, local_note=""
    ) as tracker:
        tracker.log_params({"train": {"steps": index, "lr": 0.001}, "index": index})
        for step in range(1, 4):
            tracker.log_metrics({"loss": 1.0 / step}, step=step)
    os._exit(0 if tracker.enabled else 3)  # 3: tracking switched itself off (the store failed)


@pytest.mark.e2e
def test_parallel_first_use_of_a_fresh_sqlite_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_stage, args=(uri, i, start)) for i in range(N_PARALLEL)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0] * N_PARALLEL

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("parallel")
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{tracking.KIND_TAG}` = 'stage'", max_results=100
    )
    assert sorted(int(r.data.params["index"]) for r in runs) == list(range(N_PARALLEL))
    parents = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.KIND_TAG}` = 'image'")
    assert sorted(r.data.tags[tracking.IMAGE_TAG] for r in parents) == [f"img{i}" for i in range(4)]
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.params["train.lr"] == "0.001"
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == [1, 2, 3]


class _SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers; with
    ``health=True`` it answers ``GET /health`` (an MLflow server whose API hangs)."""

    def __init__(self, health: bool) -> None:
        self.health = health
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.uri = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                continue
            self.conns.append(conn)
            if self.health:
                threading.Thread(target=self._answer_health, args=(conn,), daemon=True).start()

    def _answer_health(self, conn: socket.socket) -> None:
        try:
            if conn.recv(4096).split(b" ")[1:2] == [b"/health"]:
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                conn.close()
        except OSError:
            pass

    def close(self) -> None:
        self._stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.e2e
@pytest.mark.parametrize("health", [False, True], ids=["silent", "api-hangs"])
def test_hanging_server_adds_at_most_10_seconds_and_warns_once(trained_project, capfd, monkeypatch, health):
    pytest.importorskip("mlflow.tracking")  # imported before timing: only the waiting is measured
    from sindiffusion.cli import main

    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    for key in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.delenv(key, raising=False)
    server = _SilentServer(health)
    argv = ["sample", "--image", "img", "--num", "1", "--no-progress"]
    try:
        t0 = time.monotonic()
        assert main([*argv, "--set", "tracking.enabled=false"]) == 0
        offline = time.monotonic() - t0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.monotonic()
            assert main([*argv, "--set", f"tracking.tracking_uri={server.uri}"]) == 0
            hanging = time.monotonic() - t0
    finally:
        server.close()
    err = capfd.readouterr().err
    assert hanging - offline <= 10, f"the hanging server added {hanging - offline:.1f} s"
    # one line on stderr, and no warnings.warn that a terminal would show as a second copy
    assert err.count(server.uri) == 1 and err.count("WARNING") == 1, err
    assert not [w for w in caught if server.uri in str(w.message)]
    assert "results/img/samples" in err  # says where the results still went


# ---------------------------------------------------------------------------- issue 28, item 1
def _half_made_store(path, runs: int = 0) -> bytes:
    """A store as an older version left it when killed during its first use: MLflow's migrations
    stopped half-way (a leftover ``_alembic_tmp_experiments`` table, most tables missing); with
    ``runs`` rows in ``runs`` (a store that holds someone's runs). Returns its bytes."""
    import sqlite3

    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
        INSERT INTO alembic_version VALUES ('7f2a7d5fae7d');
        CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name VARCHAR(256));
        INSERT INTO experiments VALUES (0, 'Default');
        CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER PRIMARY KEY, name VARCHAR(256));
        CREATE TABLE runs (run_uuid VARCHAR(32) PRIMARY KEY, name VARCHAR(250));
        """
    )
    con.executemany("INSERT INTO runs VALUES (?, ?)", [(f"run{i}", f"img/train{i}") for i in range(runs)])
    con.commit()
    con.close()
    return path.read_bytes()


def _first_use(uri: str) -> tracking.Tracker:
    return tracking.open_tracker("train", "img", enabled=True, experiment="e", uri=uri, local_note="(local note)")


def test_a_half_made_empty_store_is_moved_aside_and_made_anew(tmp_path, monkeypatch, capfd):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    db = tmp_path / "mlflow.db"
    old = _half_made_store(db)
    tracker = _first_use(f"sqlite:///{db}")
    assert tracker.enabled
    tracker.finish()
    err = capfd.readouterr().err
    (aside,) = tmp_path.glob("mlflow.db.broken-*")
    assert aside.read_bytes() == old  # moved, not deleted
    assert str(db) in err and "_alembic_tmp_experiments" in err and str(aside) in err, err
    (run,) = MlflowClient(tracking_uri=f"sqlite:///{db}").search_runs(
        [MlflowClient(tracking_uri=f"sqlite:///{db}").get_experiment_by_name("e").experiment_id],
        filter_string=f"tags.`{tracking.KIND_TAG}` = 'stage'",
    )
    assert run.info.status == "FINISHED"


def test_a_half_made_store_that_holds_runs_is_named_with_the_fix_and_left_alone(tmp_path, monkeypatch, capfd):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    db = tmp_path / "mlflow.db"
    old = _half_made_store(db, runs=2)
    tracker = _first_use(f"sqlite:///{db}")
    assert not tracker.enabled  # the stage goes on without tracking
    err = capfd.readouterr().err
    assert err.count("WARNING") == 1, err
    assert str(db) in err and "_alembic_tmp_experiments" in err and "move" in err and "aside" in err, err
    assert "(local note)" in err  # where the results still are
    assert db.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


#: What a killed first use runs: the imports come first, so that each kill lands in the creation.
_FIRST_USE = """
import sys
from sindiffusion import tracking
import mlflow.store.tracking.sqlalchemy_store
print("ready", flush=True)
sys.stdin.readline()
tracking.open_tracker("train", "img", enabled=True, experiment="e", uri=sys.argv[1], local_note="")
print("done", flush=True)
"""


@pytest.mark.e2e
def test_a_kill_during_the_first_use_leaves_no_store_or_a_complete_one(tmp_path, monkeypatch, capfd):
    """``kill -9`` a first use at several moments after MLflow starts creating its tables: each
    leaves no store or a complete one, and the next first use tracks without a warning."""
    pytest.importorskip("mlflow")
    import signal
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    delays = [0.0, 0.15, 0.35, 0.6]
    folders = [tmp_path / f"kill{i}" for i in range(len(delays))]
    procs = []
    for folder in folders:
        folder.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _FIRST_USE, f"sqlite:///{folder}/mlflow.db"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=folder,
            )
        )
    try:
        for proc in procs:  # imported in parallel
            assert proc.stdout.readline() == "ready\n"
        for proc, delay in zip(procs, delays):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            for line in proc.stderr:  # MLflow logs this line when it starts on the tables
                if "Creating initial MLflow database tables" in line:
                    break
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    midway = [f for f in folders if not (f / "mlflow.db").exists()]
    assert folders[0] in midway  # killed while the tables were being made: no store
    for folder in folders:
        db = folder / "mlflow.db"
        if db.exists():  # complete: MLflow reads and writes it
            client = MlflowClient(tracking_uri=f"sqlite:///{db}")
            client.create_run(client.get_experiment_by_name("Default").experiment_id)
        capfd.readouterr()
        tracker = _first_use(f"sqlite:///{db}")
        assert tracker.enabled, capfd.readouterr().err
        tracker.finish()
        assert "WARNING" not in capfd.readouterr().err
        assert sorted(p.name for p in folder.iterdir() if p.name.startswith("mlflow.db")) == ["mlflow.db"]
        assert not [p for p in folder.iterdir() if p.name.startswith(".mlflow.db")]  # no temporary left
