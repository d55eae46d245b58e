"""MLflow tracking: nested runs per image, params and metrics; never kills a stage."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from sindiffusion import tracking
from sindiffusion.cli import main
from sindiffusion.tracking import SafeTracker, Tracker, flatten, open_tracker, resolve_uri
from tests.tiny import one_torch_thread, tiny_project  # noqa: F401


def test_flatten():
    flat = flatten({"train": {"lr": 1e-4, "steps": 3}, "model": {"channel_mult": (1, 2), "x": {"y": None}}, "a": "b"})
    assert flat == {
        "train.lr": "0.0001",
        "train.steps": "3",
        "model.channel_mult": "[1, 2]",
        "model.x.y": "None",
        "a": "b",
    }


def test_resolve_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_uri(None) == "http://env:5000"
    assert resolve_uri("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize("env,enabled", [("off", True), ("0", True), ("false", True), ("on", False)])
def test_disabled_gives_a_null_tracker(monkeypatch, env, enabled):
    monkeypatch.setenv("SINDIFFUSION_TRACKING", env)
    tracker = open_tracker("train", "img", enabled=enabled, experiment="e", uri="http://127.0.0.1:9", local_note="")
    # either switch turns tracking off (env "on" is not an off value; there the config's enabled=False wins)
    assert type(tracker) is Tracker and not tracker.enabled and tracker.run_id is None


def test_safe_tracker_warns_once_and_stops(capsys):
    calls = []

    class Flaky(Tracker):
        enabled = True

        def log_metrics(self, metrics, step=None):
            calls.append(metrics)
            raise ConnectionError("server went away")

    safe = SafeTracker(Flaky(), "Metrics are in loss.csv.")
    safe.log_metrics({"loss": 1.0})
    safe.log_metrics({"loss": 2.0})
    safe.finish()
    assert calls == [{"loss": 1.0}] and not safe.enabled
    err = capsys.readouterr().err
    assert err.count("WARNING") == 1 and "server went away" in err and "Metrics are in loss.csv." in err


def test_unreachable_server_does_not_stop_a_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = "http://127.0.0.1:9"
    tiny_project(tmp_path, tracking={"enabled": True, "tracking_uri": uri}, train={"steps": 2})
    assert main(["preprocess", "--image", "img"]) == 0
    capsys.readouterr()
    assert main(["train", "--image", "img", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("WARNING") == 1 and uri in err and "unreachable" in err
    assert "results/img/train/loss.csv" in err  # says where the metrics went
    assert "`sindiffusion log-model --image img --params params.yaml`" in err  # and how to log the model later
    rows = (tmp_path / "results/img/train/loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,it_per_s" and len(rows) == 3
    assert json.loads((tmp_path / "results/img/train/metrics.json").read_text())["steps"] == 2
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


@pytest.fixture
def sqlite_project(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    tiny_project(
        tmp_path, tracking={"enabled": True, "tracking_uri": uri, "experiment": "exp-test"}, train={"steps": 3}
    )
    return uri


def test_sqlite_runs_are_nested_per_image(sqlite_project, tmp_path, capsys):
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    assert main(["preprocess", "--image", "img"]) == 0
    assert main(["train", "--image", "img", "--no-progress"]) == 0
    assert main(["sample", "--image", "img", "--no-progress"]) == 0
    # a bad value is refused when the params load: exit 2 and no (failed) run in MLflow
    assert main(["sample", "--image", "img", "--no-progress", "--set", "sample.sampler=nope"]) == 2
    assert "WARNING" not in capsys.readouterr().err

    client = MlflowClient(tracking_uri=sqlite_project)
    exp = client.get_experiment_by_name("exp-test")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "image"]
    stages = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "stage"]
    assert len(parents) == 1 and len(runs) == 4
    parent = parents[0]
    assert parent.info.run_name == "img" and parent.data.tags[tracking.IMAGE_TAG] == "img"
    assert all(r.data.tags[MLFLOW_PARENT_RUN_ID] == parent.info.run_id for r in stages)
    by_stage: dict[str, list] = {}
    for r in stages:
        by_stage.setdefault(r.data.tags["sindiffusion.stage"], []).append(r)
    assert sorted((k, len(v)) for k, v in by_stage.items()) == [("preprocess", 1), ("sample", 1), ("train", 1)]
    assert [r.info.status for r in by_stage["sample"]] == ["FINISHED"]

    train = by_stage["train"][0]
    assert train.info.status == "FINISHED" and train.info.run_name == "img/train"
    p = train.data.params
    assert p["train.steps"] == "3" and p["train.lr"] == "0.002" and p["model.base_channels"] == "8"
    assert p["model.channel_mult"] == "[1, 2]" and p["diffusion.timesteps"] == "100"
    assert "sample.steps" not in p  # the train stage logs only its own sections
    assert p["git_commit"] and p["device"].startswith("cpu") and p["image"] == "img"
    assert p["resumed_from_step"] == "0"
    m = train.data.metrics
    metrics = json.loads((tmp_path / "results/img/train/metrics.json").read_text())
    assert m["final_loss"] == pytest.approx(metrics["final_loss"]) and m["steps"] == 3
    history = client.get_metric_history(train.info.run_id, "loss")
    assert sorted(h.step for h in history) == [1, 2, 3]
    assert train.data.tags["checkpoint.sha256"]

    pre = by_stage["preprocess"][0].data
    assert pre.params["preprocess.max_size"] == "48" and "device" not in pre.params
    assert pre.metrics["height"] == 40 and pre.metrics["width"] == 48

    ok = [r for r in by_stage["sample"] if r.info.status == "FINISHED"][0]
    assert ok.data.params["sample.num_samples"] == "2" and "seconds_per_step" in ok.data.metrics
    artifacts = [a.path for a in client.list_artifacts(ok.info.run_id)]
    assert "grid.png" in artifacts

    # a second train run (resumed) lands under the same parent
    assert main(["train", "--image", "img", "--no-progress", "--set", "train.steps=4"]) == 0
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`sindiffusion.stage` = 'train'")
    assert len(runs) == 2 and {r.data.tags[MLFLOW_PARENT_RUN_ID] for r in runs} == {parent.info.run_id}
    assert sorted(r.data.params["resumed_from_step"] for r in runs) == ["0", "3"]

    # the UI: a classic ML/DL experiment (runs table, not the GenAI view); the Dataset column of the
    # train runs and of the image's parent run names the training image (once, however often trained)
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    sha = hashlib.sha256((tmp_path / "results/img/preprocess/image.png").read_bytes()).hexdigest()
    for run in [*runs, client.get_run(parent.info.run_id)]:
        inputs = run.inputs.dataset_inputs
        assert len(inputs) == 1, run.info.run_name
        ds = inputs[0].dataset
        assert (ds.name, ds.digest, ds.source_type) == ("img", sha[: tracking.DIGEST_CHARS], "local")
        assert json.loads(ds.profile) == {"sha256": sha, "height": 40, "width": 48}
        assert json.loads(ds.source)["uri"].endswith("results/img/preprocess/image.png")
        assert [(t.key, t.value) for t in inputs[0].tags] == [("mlflow.data.context", "training")]
    assert not client.get_run(by_stage["preprocess"][0].info.run_id).inputs.dataset_inputs


def test_experiment_kind_set_on_old_experiments_but_a_chosen_kind_is_kept(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    old = client.create_experiment("old")  # made before the tag existed
    chosen = client.create_experiment("chosen", tags={tracking.EXPERIMENT_KIND_TAG: "forecasting"})
    guessed = client.create_experiment("guessed", tags={tracking.EXPERIMENT_KIND_TAG: "genai_development_inferred"})
    for name in ("old", "chosen", "guessed"):
        tracking.MlflowTracker(uri, name, "img", "train").finish()
    kind = lambda exp_id: client.get_experiment(exp_id).tags[tracking.EXPERIMENT_KIND_TAG]
    assert (kind(old), kind(chosen), kind(guessed)) == (
        "custom_model_development",
        "forecasting",
        "custom_model_development",
    )


def test_ui_url_opens_the_training_runs_view():
    assert tracking.ui_url("http://h:5000/") == "http://h:5000/#/experiments?workflowType=machine_learning"
    assert tracking.ui_url("http://h:5000", "7") == "http://h:5000/#/experiments/7?workflowType=machine_learning"


def _system_metric_keys(uri: str, run_id: str) -> set[str]:
    from mlflow.tracking import MlflowClient

    return {k for k in MlflowClient(tracking_uri=uri).get_run(run_id).data.metrics if k.startswith("system/")}


def test_system_metrics_are_logged_for_train_and_sample_only(tmp_path, monkeypatch):
    """tracking.system_metrics: MLflow's system metrics (CPU, memory, ...) in train/sample runs."""
    import time

    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.setattr(tracking, "SYSTEM_METRICS_INTERVAL_S", 0.2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = {}
    for stage, on in (("train", True), ("sample", True), ("preprocess", True), ("evaluate", False)):
        tracker = open_tracker(stage, "img", enabled=True, experiment="e", uri=uri, local_note="", system_metrics=on)
        assert tracker.enabled
        time.sleep(0.8)  # a few samples
        tracker.finish()
        runs[stage] = tracker.run_id
    keys = _system_metric_keys(uri, runs["train"])
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= keys, keys
    assert _system_metric_keys(uri, runs["sample"])
    assert not _system_metric_keys(uri, runs["preprocess"]) and not _system_metric_keys(uri, runs["evaluate"])


def test_system_metrics_without_psutil_warn_and_skip(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = open_tracker("train", "img", enabled=True, experiment="e", uri=uri, local_note="", system_metrics=True)
    assert tracker.enabled
    tracker.finish()
    assert "psutil is not installed" in capsys.readouterr().err
    assert not _system_metric_keys(uri, tracker.run_id)


def test_system_metrics_default_is_on_in_slurm_jobs_only():
    """``auto`` (the default): on where Slurm runs the stage (every job of the Slurm profile)."""
    from sindiffusion.config import TrackingConfig

    auto = TrackingConfig()
    assert auto.system_metrics == "auto"
    assert auto.system_metrics_on({"SLURM_JOB_ID": "42"}) and not auto.system_metrics_on({})
    assert not TrackingConfig(system_metrics=False).system_metrics_on({"SLURM_JOB_ID": "42"})
    assert TrackingConfig(system_metrics=True).system_metrics_on({})


@pytest.mark.parametrize("env", [None, "http://server:5000"])
def test_mlflow_uri_puts_the_process_state_back(monkeypatch, tmp_path, env):
    """MLflow's own set_tracking_uri rewrites $MLFLOW_TRACKING_URI (and deletes it on reset): after
    the block, the environment and MLflow's default URI are as before (a later stage in the same
    process must log where the user said)."""
    mlflow = pytest.importorskip("mlflow")
    if env is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", env)
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    before = mlflow.get_tracking_uri()
    inner = f"sqlite:///{tmp_path}/m.db"
    with tracking.mlflow_uri(inner):
        assert mlflow.get_tracking_uri() == inner
        assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert os.environ.get("MLFLOW_TRACKING_URI") == env and mlflow.get_tracking_uri() == before
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
