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
