"""``--model-uri``: a sindiffusion model logged in MLflow (:mod:`sindiffusion.logged_model`) resolved to
its checkpoint, downloaded into a temporary folder (:func:`resolve_model_uri`, :class:`ModelSource`).

Apart from :mod:`sindiffusion.logged_model` so that the import graph has no cycle: this module needs the
tracking helpers (:mod:`sindiffusion.tracking`), and tracking writes logged models.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Any, Collection, Mapping

from .artifacts import sha256_file
from .checkpoint import CheckpointError, load_checkpoint
from .logged_model import LOADER_MODULE, METADATA_KEY
from .models.kinds import kind_of_checkpoint
from .tracking import bound_http, check_server, mlflow_uri, resolve_uri


class ModelUriError(ValueError):
    """A ``--model-uri`` that does not resolve to a sindiffusion model of a kind the command takes
    (exit 2); the message names the URI and what was found there."""


@dataclasses.dataclass
class ModelSource:
    """A checkpoint to load: a local file (``--checkpoint``), or one downloaded from an MLflow model
    (``--model-uri``) into a temporary folder that lives as long as this object."""

    path: Path
    uri: str | None = None
    kind: str | None = None
    _tmp: Any = dataclasses.field(default=None, repr=False)

    @property
    def label(self) -> str:
        """What outputs and messages record as the model: the URI, else the file."""
        return self.uri or str(self.path)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_LOGGED_MODEL_ID = re.compile(r"^models:/(m-[0-9a-f]+)/?$")
URI_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-ID or runs:/RUN_ID/NAME"


def resolve_model_uri(
    uri: str, tracking_uri: str | None = None, kinds: Collection[str] | None = None, flag: str = "--model-uri"
) -> ModelSource:
    """Download the checkpoint of the sindiffusion model ``uri`` (from the tracking server/store
    ``tracking_uri``; None = :func:`~sindiffusion.tracking.resolve_uri`'s default). ``kinds``: the
    model kinds the command takes (None = any). Raises :class:`ModelUriError` (exit 2) naming
    ``flag`` and ``uri`` when it does not resolve, is not a sindiffusion model, is of another kind,
    or its checkpoint is unusable; nothing is downloaded beyond the ``MLmodel`` file then."""
    where = f"{flag} {uri}"
    if not _SCHEME.match(uri):
        hint = " (a checkpoint file goes to --checkpoint)" if Path(uri).exists() else ""
        raise ModelUriError(f"{where}: not a model URI; expected {URI_FORMS}{hint}")
    store = resolve_uri(tracking_uri)
    bound_http()
    try:
        check_server(store)
    except ConnectionError as err:
        raise ModelUriError(f"{where}: cannot resolve it: {err}") from None
    tmp = tempfile.TemporaryDirectory(prefix="sindiffusion-model-")
    try:
        with mlflow_uri(store):
            base = _artifact_base(uri, where, store)
            model = _mlmodel(base, where, store, Path(tmp.name) / "meta")
            conf = model.flavors.get("python_function") or {}
            info = (model.metadata or {}).get(METADATA_KEY)
            if conf.get("loader_module") != LOADER_MODULE or not isinstance(info, dict) or not conf.get("data"):
                raise ModelUriError(f"{where}: not a sindiffusion model: {_found(model)}")
            kind = str(info.get("kind"))
            if kinds is not None and kind not in kinds:
                raise ModelUriError(
                    f"{where}: a model of kind {kind!r} (image {info.get('image')!r}); this command takes "
                    f"model.kind {' or '.join(repr(k) for k in sorted(kinds))} only"
                )
            data = str(conf["data"])
            try:
                path = Path(_download(f"{base}/{data}", Path(tmp.name) / "model"))
            except Exception as err:
                raise ModelUriError(f"{where}: its checkpoint {data} cannot be downloaded ({_short(err)})") from None
        _check_checkpoint(path, info, f"{uri} ({data})", where)
    except BaseException:
        tmp.cleanup()
        raise
    return ModelSource(path=path, uri=uri, kind=kind, _tmp=tmp)


def _artifact_base(uri: str, where: str, store: str) -> str:
    """Where the model's files are: the URI itself, or for a logged model ID (``models:/m-...``,
    whose files MLflow does not serve by sub-path) its artifact location."""
    match = _LOGGED_MODEL_ID.match(uri)
    if not match:
        return uri.rstrip("/")
    # why: mlflow is heavy (seconds to import); only a tracked run needs it
    from mlflow import MlflowClient

    try:
        return MlflowClient(tracking_uri=store).get_logged_model(match.group(1)).artifact_location.rstrip("/")
    except Exception as err:
        raise ModelUriError(f"{where}: does not resolve in {store} ({_short(err)})") from None


def _mlmodel(base: str, where: str, store: str, dst: Path) -> Any:
    # why: mlflow is heavy (seconds to import); only a tracked run needs it
    from mlflow.models import Model

    try:
        return Model.load(_download(f"{base}/MLmodel", dst))
    except Exception as err:
        raise ModelUriError(
            f"{where}: no MLflow model there in {store} ({_short(err)}); expected {URI_FORMS} "
            "of a model logged by `sindiffusion train`"
        ) from None


def _download(uri: str, dst: Path) -> str:
    # why: mlflow is heavy (seconds to import); only a tracked run needs it
    import mlflow

    dst.mkdir(parents=True, exist_ok=True)
    return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))


def _found(model: Any) -> str:
    conf = model.flavors.get("python_function") or {}
    loader = conf.get("loader_module") or ("a pickled python_model" if "python_model" in conf else "none")
    return (
        f"its MLmodel has the flavors {', '.join(model.flavors) or 'none'} (python_function loader: {loader}), "
        f"not the {LOADER_MODULE} loader of a model logged by `sindiffusion train`"
    )


def _check_checkpoint(path: Path, info: Mapping[str, Any], label: str, where: str) -> None:
    """The downloaded file is the checkpoint the model recorded (sha256) and a loadable one."""
    expected = str(info.get("checkpoint_sha256", ""))
    if expected and sha256_file(path) != expected:
        raise ModelUriError(
            f"{where}: the downloaded checkpoint's sha256 differs from the one the model records "
            f"({expected[:12]}...): a corrupt copy in the artifact store"
        )
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as err:
        raise ModelUriError(f"{where}: {str(err).replace(str(path), label)}") from None
    kind = kind_of_checkpoint(ckpt).name
    if kind != info.get("kind"):
        raise ModelUriError(f"{where}: the model says kind {info.get('kind')!r}, its checkpoint is {kind!r}")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"
