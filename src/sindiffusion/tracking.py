"""Experiment tracking. With :mod:`sindiffusion.logged_model` (the MLflow model of a checkpoint)
and :mod:`sindiffusion.sqlite_store` (the local store, made whole or not at all), the only module
that imports MLflow.

Layout in MLflow: one experiment (``tracking.experiment``, default ``sindiffusion``); one
*parent run per training image* (run name = image name, tag ``sindiffusion.image``); every
stage execution (preprocess, train, sample, evaluate, manipulate) is a *nested run* under it,
created from whichever process (laptop or Slurm job) runs the stage.

The train stage also logs the trained model as an MLflow *logged model* (:meth:`MlflowTracker.log_model`,
``tracking.log_model``), optionally registered (``tracking.register_as``, with aliases); later
metrics of that run, and the evaluate metrics of samples drawn from the same checkpoint
(:meth:`MlflowTracker.link_model`), are linked to it.

Tracking never kills a stage: if the server is unreachable or a call fails, a warning is
printed once, tracking is switched off for the rest of the stage, and the metrics stay in the
stage's local files (CSV/JSON beside its outputs).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

from .locks import exclusive
from .signals import Preempted, deferred
from .sqlite_store import ensure_store, sqlite_path

DEFAULT_URI = "sqlite:///mlflow.db"
IMAGE_TAG = "sindiffusion.image"
KIND_TAG = "sindiffusion.kind"
#: MLflow >= 3.4 experiment types: without this tag the UI guesses, and opened our experiment in its
#: GenAI view (traces, prompts); "custom_model_development" is the classic ML/DL runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: MLflow's SQL stores keep a dataset digest in 36 characters: the first 16 hex digits of the
#: sha256 name the image there (the full hash is in the dataset's profile).
DIGEST_CHARS = 16
#: Stages whose runs log MLflow system metrics when ``tracking.system_metrics`` is on (the long ones).
SYSTEM_METRICS_STAGES = ("train", "sample")
#: Seconds between two system-metrics samples (MLflow's default).
SYSTEM_METRICS_INTERVAL_S = 10.0
#: The dataset input's role in MLflow (tag ``mlflow.data.context``): the image a model is trained on.
DATASET_CONTEXT = "training"
#: Run and logged-model tag: the checkpoint file's sha256 (how evaluate finds the model of its samples).
CHECKPOINT_SHA_TAG = "checkpoint.sha256"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 1e-4}}`` -> ``{"train.lr": "0.0001"}`` (lists joined as strings)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(list(v) if isinstance(v, tuple) else v)
    return out


#: MLflow 3.17's UI picks its view from a browser-wide "GenAI | Model training" switch (default GenAI,
#: remembered per browser) rather than from the experiment's type tag; this query selects the
#: training runs table for a link, whatever the switch says.
UI_QUERY = "?workflowType=machine_learning"


def ui_url(server: str, experiment_id: str | None = None) -> str:
    """Link to the MLflow UI of ``server`` (``http://host:port``) that opens on the training runs
    table: the experiment's (``experiment_id``) or the experiments list."""
    page = f"experiments/{experiment_id}" if experiment_id else "experiments"
    return f"{server.rstrip('/')}/#/{page}{UI_QUERY}"


def git_commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip()
            or "unknown"
        )
    except Exception:
        return "unknown"


def resolve_uri(configured: str | None) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def bound_http() -> None:
    """Bound every HTTP call to the tracking server (5 s, no retry) unless the user chose otherwise:
    a server that hangs adds seconds, not MLflow's default of 120 s x 7 tries."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@contextlib.contextmanager
def mlflow_uri(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking URI set to ``uri`` for the block, then restored, and its
    artifact progress bars off (unless ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` is set). The URI is
    needed where MLflow itself opens a default client: resolving ``models:/`` URIs, and the model
    registry looking up the logged model of a new version."""
    # why: mlflow is heavy (seconds to import); only a tracked run needs it
    import mlflow
    from mlflow.tracking._tracking_service import utils

    # mlflow.set_tracking_uri also sets (or, given None, deletes) $MLFLOW_TRACKING_URI: both are put back
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")}
    previous = utils._tracking_uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Tracker:
    """No-op tracker (tracking disabled, or fallen back after an error)."""

    enabled = False
    run_id: str | None = None
    model_uri: str | None = None
    """``models:/m-...`` of the model :meth:`log_model` logged (None: none)."""

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_image(self, image: Any, key: str, step: int = 0, parent: bool = False) -> None: ...
    def log_dataset(
        self, name: str, sha256: str, source: str | Path, profile: dict[str, Any] | None = None
    ) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def log_model(
        self,
        checkpoint: str | Path,
        name: str,
        sampling: dict[str, Any],
        register_as: str | None = None,
        aliases: Sequence[str] = (),
    ) -> None: ...
    def link_model(self, checkpoint_sha256: str, dataset: tuple[str, str] | None = None) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


class MlflowTracker(Tracker):
    """Logs one stage run (nested under the image's parent run) through ``MlflowClient``."""

    enabled = True

    def __init__(self, uri: str, experiment: str, image: str, stage: str) -> None:
        # why: mlflow is heavy (seconds to import); only a tracked run needs it
        import mlflow
        from mlflow.tracking import MlflowClient
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        self._mlflow = mlflow
        self.uri = uri
        with _store_lock(uri):
            # Opening a fresh SQLite file makes MLflow create and migrate its schema in place: done by
            # several processes at once, or stopped by a kill, that ruins the file for good ("table
            # _alembic_tmp_... already exists"). Under the lock, the first process makes the store
            # under a temporary name and renames it into place complete; the others find it so.
            db = sqlite_path(uri)
            note = ensure_store(db) if db is not None else None
            if note:
                _warn(note)
            self.client = MlflowClient(tracking_uri=uri)
            exp_id = self._experiment_id(experiment)
            self.experiment_id = exp_id
            parent_id = self._parent_run_id(exp_id, image)
            run = self.client.create_run(
                exp_id,
                run_name=f"{image}/{stage}",
                tags={
                    IMAGE_TAG: image,
                    KIND_TAG: "stage",
                    "sindiffusion.stage": stage,
                    MLFLOW_PARENT_RUN_ID: parent_id,
                    MLFLOW_RUN_NAME: f"{image}/{stage}",
                },
            )
        self.parent_run_id = parent_id
        self.run_id = run.info.run_id
        self.model_uri = None
        self._dataset: tuple[str, str] | None = None  # (name, digest) of the dataset logged last
        self._link: dict[str, str] = {}  # model_id (+ dataset) that log_metrics attaches

    def _experiment_id(self, name: str) -> str:
        """Get or create the experiment, typed as a classic ML/DL experiment (:data:`EXPERIMENT_KIND`);
        several jobs may race to create it (Slurm, parallel local jobs)."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                return self.client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except Exception:
                exp = self.client.get_experiment_by_name(name)  # another job created it meanwhile
                if exp is None:
                    raise
        kind = exp.tags.get(EXPERIMENT_KIND_TAG, "")
        # an experiment made before this tag existed (or typed only by the UI's guess); a type a user
        # chose in the UI is kept
        if kind != EXPERIMENT_KIND and (not kind or kind.endswith("_inferred") or kind == "no_inferred_type"):
            self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id

    def _parents(self, exp_id: str, image: str) -> list:
        runs = self.client.search_runs(
            [exp_id],
            filter_string=f"tags.`{IMAGE_TAG}` = '{image}' and tags.`{KIND_TAG}` = 'image'",
            max_results=50,
        )
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def _parent_run_id(self, exp_id: str, image: str) -> str:
        """The image's parent run: the oldest one; created if none. Jobs of one image that start
        at the same time (other processes, other nodes) may each create one: every job then
        picks the oldest, and a job whose own new parent lost deletes it."""
        found = self._parents(exp_id, image)
        if found:
            return found[0].info.run_id
        parent = self.client.create_run(exp_id, run_name=image, tags={IMAGE_TAG: image, KIND_TAG: "image"})
        self.client.set_terminated(parent.info.run_id, "FINISHED")
        oldest = self._parents(exp_id, image)[0].info.run_id
        if oldest != parent.info.run_id:
            self.client.delete_run(parent.info.run_id)
        return oldest

    def log_params(self, params: dict[str, Any]) -> None:
        # why: mlflow is heavy (seconds to import); only a tracked run needs it
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        # why: mlflow is heavy (seconds to import); only a tracked run needs it
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step or 0, **self._link) for k, v in metrics.items() if v is not None]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_image(self, image: Any, key: str, step: int = 0, parent: bool = False) -> None:
        """Log to the stage run, or with ``parent=True`` to the image's parent run: its Model
        metrics tab then shows input and samples side by side (a stage run's image cards list
        all its params above the image, which pushes the image out of view)."""
        self.client.log_image(self.parent_run_id if parent else self.run_id, image, key=key, step=step)

    def log_dataset(self, name: str, sha256: str, source: str | Path, profile: dict[str, Any] | None = None) -> None:
        """Log a training image as the dataset input of this run and of the image's parent run (the
        runs table's Dataset column): name = image name, digest = its sha256's first
        :data:`DIGEST_CHARS` hex digits, source = the file, profile = ``profile`` + the full sha256."""

        # why: mlflow is heavy (seconds to import); only a tracked run needs it
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name=name,
            digest=sha256[:DIGEST_CHARS],
            source_type="local",
            source=json.dumps({"uri": str(source)}),
            profile=json.dumps({**(profile or {}), "sha256": sha256}),
        )
        tags = [InputTag(key="mlflow.data.context", value=DATASET_CONTEXT)]
        for run_id in dict.fromkeys((self.run_id, self.parent_run_id)):
            self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])
        self._dataset = (name, dataset.digest)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_model(
        self,
        checkpoint: str | Path,
        name: str,
        sampling: dict[str, Any],
        register_as: str | None = None,
        aliases: Sequence[str] = (),
    ) -> None:
        """Log ``checkpoint`` as an MLflow logged model named ``name`` (the experiment's *Models*
        tab), made by this run: a ``pyfunc`` model whose artifact is the checkpoint file
        (:mod:`sindiffusion.logged_model`; ``sampling``: its default sampling settings), with this
        run's params, the checkpoint's kind, image and sha256 as tags. Metrics logged afterwards are
        the model's (with the dataset of :meth:`log_dataset`). ``register_as``: also a new version of
        that registered model, with ``aliases`` moved to it. Sets :attr:`model_uri`."""

        # why: mlflow is heavy (seconds to import); only a tracked run needs it
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model

        # why: start-up: logged_model imports torch (~2 s); workflow/rules/common.smk imports tracking (ui_url)
        from . import logged_model

        info = logged_model.describe(checkpoint)
        tags = {
            IMAGE_TAG: info["image"],
            "sindiffusion.model_kind": info["kind"],
            "sindiffusion.step": str(info["step"]),
            CHECKPOINT_SHA_TAG: info["checkpoint_sha256"],
            "checkpoint.path": str(checkpoint),
        }
        model = self.client.create_logged_model(
            self.experiment_id,
            name=name,
            source_run_id=self.run_id,
            tags=tags,
            params={k: v[:6000] for k, v in self.client.get_run(self.run_id).data.params.items()},
            model_type=logged_model.MODEL_TYPE,
        )
        try:
            with tempfile.TemporaryDirectory() as tmp:
                description = Model(
                    artifact_path=model.artifact_location,
                    model_uuid=model.model_id,
                    run_id=self.run_id,
                    model_id=model.model_id,
                )
                local = Path(tmp) / "model"
                logged_model.save_pyfunc(local, checkpoint, info, sampling, description)
                with mlflow_uri(self.uri):
                    self.client.log_model_artifacts(model.model_id, str(local))
            self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
            self.client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step=info["step"])])
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise
        self.model_uri = f"models:/{model.model_id}"
        self._link = {"model_id": model.model_id, "run_id": self.run_id}
        if self._dataset is not None:
            self._link.update(dataset_name=self._dataset[0], dataset_digest=self._dataset[1])
        self.client.set_tag(self.run_id, "sindiffusion.model_uri", self.model_uri)
        note = ""
        if register_as:
            version = self._register(register_as, model.model_id, info, aliases)
            note = f", registered as models:/{register_as}/{version}" + "".join(
                f", models:/{register_as}@{alias}" for alias in aliases
            )
        _info(f"logged model {self.model_uri} (runs:/{self.run_id}/{name}){note}")

    def _register(self, name: str, model_id: str, info: dict[str, Any], aliases: Sequence[str]) -> str:
        """A new version of registered model ``name`` (created if missing) for the logged model;
        every alias of ``aliases`` moved to it. Returns the version."""
        # why: mlflow is heavy (seconds to import); only a tracked run needs it
        from mlflow.exceptions import MlflowException

        with mlflow_uri(self.uri):  # the registry fetches the logged model with a default client
            try:
                self.client.get_registered_model(name)
            except MlflowException:
                with contextlib.suppress(MlflowException):  # another job may create it meanwhile
                    self.client.create_registered_model(
                        name, description="sindiffusion models (one version per training)"
                    )
            version = self.client.create_model_version(
                name,
                source=f"models:/{model_id}",
                run_id=self.run_id,
                model_id=model_id,
                tags={IMAGE_TAG: info["image"], "sindiffusion.model_kind": info["kind"]},
            ).version
            for alias in aliases:
                self.client.set_registered_model_alias(name, alias, version)
        self.client.set_logged_model_tags(model_id, {"sindiffusion.registered_as": f"{name}/{version}"})
        return str(version)

    def link_model(self, checkpoint_sha256: str, dataset: tuple[str, str] | None = None) -> None:
        """Make metrics logged afterwards the metrics of the newest logged model of that checkpoint
        (evaluate: the scores of its samples), on ``dataset`` ``(name, sha256)``; none logged: no link."""
        found = self.client.search_logged_models(
            [self.experiment_id],
            filter_string=f"tags.`{CHECKPOINT_SHA_TAG}` = '{checkpoint_sha256}'",
            order_by=[{"field_name": "creation_time", "ascending": False}],
            max_results=1,
        )
        if not found:
            return
        self._link = {"model_id": found[0].model_id, "run_id": self.run_id}
        if dataset is not None:
            self._link.update(dataset_name=dataset[0], dataset_digest=dataset[1][:DIGEST_CHARS])

    def start_system_metrics(self, interval: float | None = None) -> bool:
        """Log MLflow's system metrics (``system/cpu_utilization_percentage``, memory, disk,
        network; GPU where pynvml is present) to this run every ``interval`` seconds (default
        :data:`SYSTEM_METRICS_INTERVAL_S`) from a
        background thread, until :meth:`finish`. False (with one warning) when psutil is missing."""
        try:
            # why: psutil only for MLflow's system metrics of a tracked run
            import psutil  # noqa: F401  (MLflow's CPU/memory monitors need it)
        except ImportError:
            _warn("tracking.system_metrics: psutil is not installed (pip install psutil); no system metrics")
            return False
        # why: mlflow is heavy (seconds to import); only a tracked run needs it
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._system_metrics = SystemMetricsMonitor(
            self.run_id, sampling_interval=interval or SYSTEM_METRICS_INTERVAL_S, tracking_uri=self.uri
        )
        self._system_metrics.start()
        return True

    def finish(self, status: str = "FINISHED") -> None:
        monitor = getattr(self, "_system_metrics", None)
        if monitor is not None:
            self._system_metrics = None
            monitor.finish()  # its last samples are flushed before the run ends
        self.client.set_terminated(self.run_id, status)


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise store initialisation between local processes sharing one SQLite file."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    with exclusive(Path(f"{db}.lock"), wait=True):
        yield


def check_server(uri: str, timeout: float = 3.0) -> None:
    """For an HTTP tracking URI, fail fast when the server does not answer /health."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as err:
        raise ConnectionError(f"MLflow server {uri} is unreachable ({err})") from err


class SafeTracker(Tracker):
    """Wraps a tracker: the first failure warns and turns tracking off for the rest of the run.

    Its logging methods (every public one of :class:`Tracker`) are added below the class by
    :func:`_guarded`."""

    def __init__(self, inner: Tracker, local_note: str) -> None:
        self.inner = inner
        self.local_note = local_note
        self.enabled = inner.enabled
        self.run_id = inner.run_id

    @property
    def model_uri(self) -> str | None:  # type: ignore[override]
        return self.inner.model_uri if self.enabled else None

    def _call(self, name: str, *args: Any, **kwargs: Any) -> None:
        if not self.enabled:
            return
        try:
            with deferred():  # a signal waits for the call: MLflow's client is never left half-way
                getattr(self.inner, name)(*args, **kwargs)
        except Exception as err:  # tracking must never kill a stage
            self.enabled = False
            _warn(
                f"MLflow tracking failed in {name} ({type(err).__name__}: {err}); tracking is off for the "
                f"rest of this stage. {self.local_note}"
            )


#: The logging methods of :class:`Tracker` (its public ones), each of which :class:`SafeTracker` guards.
TRACKER_METHODS = tuple(name for name, value in vars(Tracker).items() if callable(value) and not name.startswith("_"))


def _guarded(name: str) -> Any:
    """``SafeTracker.<name>``: the same signature and docstring as ``Tracker.<name>``, the call
    forwarded to the inner tracker through :meth:`SafeTracker._call`. Made from the interface so
    that a new tracker method is written once, in :class:`Tracker`, not again here."""

    @functools.wraps(getattr(Tracker, name))
    def method(self: SafeTracker, *args: Any, **kwargs: Any) -> None:
        self._call(name, *args, **kwargs)

    method.__qualname__ = f"SafeTracker.{name}"
    return method


for _name in TRACKER_METHODS:
    setattr(SafeTracker, _name, _guarded(_name))
del _name


def _warn(message: str) -> None:
    """One line on stderr (not also :func:`warnings.warn`, which printed the same outage twice)."""
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def _info(message: str) -> None:
    print(f"mlflow: {message}", file=sys.stderr, flush=True)


def switched_off() -> bool:
    """``SINDIFFUSION_TRACKING=off`` (or 0, false): tracking off whatever params.yaml says."""
    return os.environ.get("SINDIFFUSION_TRACKING", "").lower() in ("0", "off", "false")


def open_tracker(
    stage: str,
    image: str,
    *,
    enabled: bool,
    experiment: str,
    uri: str | None,
    local_note: str,
    system_metrics: bool = False,
) -> Tracker:
    """Start the stage's MLflow run, or return a no-op tracker (disabled, or server unreachable).
    ``system_metrics``: also log MLflow's system metrics for the stages of :data:`SYSTEM_METRICS_STAGES`."""
    if not enabled or switched_off():
        return Tracker()
    uri = resolve_uri(uri)
    # Every HTTP call is bounded (5 s, no retry): the first failure switches tracking off for the
    # stage, so a server that hangs adds at most ~5 s to a stage (MLflow's defaults: 120 s x 7 tries).
    bound_http()
    try:
        check_server(uri)
        inner = MlflowTracker(uri, experiment, image, stage)
        if system_metrics and stage in SYSTEM_METRICS_STAGES:
            inner.start_system_metrics()
        return SafeTracker(inner, local_note)
    except Exception as err:
        _warn(f"MLflow tracking unavailable ({type(err).__name__}: {err}); continuing without it. {local_note}")
        return Tracker()


@contextlib.contextmanager
def stage_run(stage: str, image: str, **options: Any) -> Iterator[Tracker]:
    """Context manager: :func:`open_tracker` ``(stage, image, **options)``; the run ends FINISHED,
    KILLED if a signal or Ctrl-C stopped the stage (training then has a resume checkpoint, tagged
    ``sindiffusion.resumable``), or FAILED. A stop signal never leaves the run RUNNING: it waits
    while the run is created and while it is ended (:func:`~sindiffusion.signals.deferred`)."""
    tracker = Tracker()
    try:
        with deferred():
            tracker = open_tracker(stage, image, **options)
        yield tracker
    except (Preempted, KeyboardInterrupt):
        tracker.finish("KILLED")
        raise
    except BaseException:
        tracker.finish("FAILED")
        raise
    with deferred():
        tracker.finish("FINISHED")
