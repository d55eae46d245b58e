"""MLflow logged models (issue 27 item 1): the train stage logs every model it writes as a pyfunc
model whose artifact is the checkpoint, optionally registered with aliases; the model loads by
``models:/`` or ``runs:/`` URI (``mlflow.pyfunc.load_model`` and ``--model-uri``) and samples;
a bad URI is exit 2 naming it; a failed logging warns once and says how to log the model later."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sindiffusion import logged_model, tracking
from sindiffusion.cli import main
from sindiffusion.logged_model import SinDiffusionPyfunc
from sindiffusion.model_uri import ModelUriError, resolve_model_uri
from tests.tiny import one_torch_thread, tiny_project  # noqa: F401

EXPERIMENT = "exp-models"
TRACKING = {"enabled": True, "experiment": EXPERIMENT, "register_as": "sd-{image}", "register_aliases": ["candidate"]}


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _pngs(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(Path(folder).glob("sample_*.png"))])


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _models(uri: str) -> list:
    client = _client(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    return list(client.search_logged_models([exp.experiment_id])) if exp else []


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A tiny project whose image ``img`` is trained (3 steps) with tracking to a SQLite store:
    its model logged and registered as ``sd-img`` (alias ``candidate``), then sampled."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("logged")
    uri = f"sqlite:///{root}/store/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SINDIFFUSION_TRACKING", raising=False)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        tiny_project(root, tracking={**TRACKING, "tracking_uri": uri}, train={"steps": 3})
        for cmd in (["preprocess"], ["train", "--no-progress"], ["sample", "--no-progress"]):
            assert main([*cmd, "--image", "img"]) == 0, cmd
    return SimpleNamespace(root=root, uri=uri)


@pytest.fixture
def at(logged, monkeypatch):
    """:func:`logged`'s project as the working directory, tracking on."""
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(logged.root)
    return logged


def test_train_logs_the_model_linked_to_its_run_dataset_and_registration(at):
    import mlflow
    from mlflow.models import Model

    client = _client(at.uri)
    [model] = _models(at.uri)
    ckpt = at.root / "results/img/train/model.pt"
    assert (model.name, model.status.to_proto(), model.model_type) == ("img", 2, "sindiffusion")  # READY
    assert model.tags["sindiffusion.model_kind"] == "unet" and model.tags[tracking.IMAGE_TAG] == "img"
    assert model.tags[tracking.CHECKPOINT_SHA_TAG] == _sha(ckpt)
    assert model.params["train.steps"] == "3"  # the train run's params
    # made by the train run: its source run, and the run's outputs list it
    run = client.get_run(model.source_run_id)
    assert run.info.run_name == "img/train" and run.data.tags["sindiffusion.model_uri"] == f"models:/{model.model_id}"
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    # its metrics are the training's, on the training image (the dataset the run logged)
    image_sha = _sha(at.root / "results/img/preprocess/image.png")
    metrics = {m.key: m for m in model.metrics}
    train_metrics = json.loads((at.root / "results/img/train/metrics.json").read_text())
    assert metrics["final_loss"].value == pytest.approx(train_metrics["final_loss"])
    assert (metrics["final_loss"].dataset_name, metrics["final_loss"].dataset_digest) == ("img", image_sha[:16])
    # registered: version 1 of sd-img, alias candidate
    version = client.get_model_version_by_alias("sd-img", "candidate")
    assert (str(version.version), version.source, version.run_id) == ("1", f"models:/{model.model_id}", run.info.run_id)
    # the artifact IS the checkpoint file, loaded by this package's pyfunc loader
    with tracking.mlflow_uri(at.uri):
        local = Path(mlflow.artifacts.download_artifacts("models:/sd-img@candidate", dst_path=str(at.root / "dl")))
    mlmodel = Model.load(str(local / "MLmodel"))
    pyfunc = mlmodel.flavors["python_function"]
    assert pyfunc["loader_module"] == "sindiffusion.logged_model" and "python_model" not in pyfunc
    assert (local / pyfunc["data"]).read_bytes() == ckpt.read_bytes()
    assert mlmodel.metadata["sindiffusion"]["kind"] == "unet" and mlmodel.metadata["sindiffusion"]["size"] == [40, 48]
    assert [c.name for c in mlmodel.signature.inputs.inputs] == ["height", "width", "num", "seed"]
    params = {p.name: p.default for p in mlmodel.signature.params.params}
    assert params["sampler"] == "ddim" and params["steps"] == 5 and params["output"] == "float"  # params.yaml sample
    assert json.loads((local / "input_example.json").read_text()) == {"height": 40, "width": 48, "num": 1, "seed": 0}


def test_the_model_loads_by_uri_and_samples_like_the_sample_stage(at):
    import mlflow

    [model] = _models(at.uri)
    with tracking.mlflow_uri(at.uri):
        pyfunc = mlflow.pyfunc.load_model("models:/sd-img@candidate")
    images = pyfunc.predict({"num": 2, "seed": 0}, params={"output": "uint8"})
    assert images.dtype == np.uint8 and images.shape == (2, 40, 48, 3)
    assert np.array_equal(images, _pngs(at.root / "results/img/samples"))  # bit for bit: the same sampling
    x = pyfunc.predict({"height": 16, "width": 24, "num": 3, "seed": 1})
    assert x.dtype == np.float32 and x.shape == (3, 3, 16, 24) and -1 <= x.min() and x.max() <= 1

    # --model-uri: runs:/ and models:/m-... URIs, for sample and for an application
    uri = f"runs:/{model.source_run_id}/img"
    assert main(["sample", "--image", "img", "--no-progress", "--model-uri", uri, "--out", "by_uri"]) == 0
    assert np.array_equal(_pngs(at.root / "by_uri"), _pngs(at.root / "results/img/samples"))
    meta = json.loads((at.root / "by_uri/samples.json").read_text())
    assert meta["checkpoint"] == uri and meta["checkpoint_sha256"] == _sha(at.root / "results/img/train/model.pt")
    out = at.root / "outpainted"
    args = ["outpaint", "--model-uri", f"models:/{model.model_id}", "--out", str(out), "--width", "64"]
    assert main([*args, "--no-progress", "--set", "manipulate.steps=3"]) == 0
    assert Image.open(out / "result.png").size == (64, 40)
    assert json.loads((out / "manipulate.json").read_text())["checkpoint"] == f"models:/{model.model_id}"


def test_evaluate_metrics_are_linked_to_the_model_that_drew_the_samples(at):
    assert main(["evaluate", "--image", "img", "--set", "evaluate.deep=false"]) == 0
    [model] = _models(at.uri)
    scores = json.loads((at.root / "results/img/evaluate/metrics.json").read_text())
    linked = {m.key: m for m in model.metrics}
    assert linked["patch_swd"].value == pytest.approx(scores["patch_swd"])
    evaluate_run = _client(at.uri).get_run(linked["patch_swd"].run_id)
    assert evaluate_run.info.run_name == "img/evaluate" and linked["patch_swd"].dataset_name == "img"


BAD_URIS = [
    ("models:/sd-img@nope", "alias nope not found"),
    ("models:/nobody/1", "nobody not found"),
    ("runs:/0123456789abcdef/img", "not found"),
    ("models:/m-0123456789abcdef", "not found"),
    ("results/img/train/model.pt", "not a model URI; expected models:/NAME@ALIAS"),
]


@pytest.mark.parametrize("uri,found", BAD_URIS)
def test_a_uri_that_does_not_resolve_exits_2_naming_it(at, capsys, uri, found):
    capsys.readouterr()
    assert main(["sample", "--image", "img", "--no-progress", "--model-uri", uri, "--out", "never"]) == 2
    err = capsys.readouterr().err
    assert f"--model-uri {uri}: " in err and found in err, err
    assert not (at.root / "never").exists()


def test_a_run_artifact_that_is_no_model_exits_2(at, capsys):
    [model] = _models(at.uri)
    uri = f"runs:/{model.source_run_id}/loss.csv"  # an artifact of the train run, not a model
    assert main(["sample", "--image", "img", "--no-progress", "--model-uri", uri, "--out", "never"]) == 2
    err = capsys.readouterr().err
    assert f"--model-uri {uri}: no MLflow model there" in err and not (at.root / "never").exists()


def test_another_projects_model_exits_2_saying_what_it_is(at, capsys, tmp_path):
    import mlflow

    data = tmp_path / "table.json"
    data.write_text("{}")
    experiment = _client(at.uri).create_experiment("other-project")
    with tracking.mlflow_uri(at.uri), mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(name="other", loader_module="json", data_path=str(data), pip_requirements=[])
    assert main(["sample", "--image", "img", "--no-progress", "--model-uri", info.model_uri, "--out", "never"]) == 2
    err = capsys.readouterr().err
    assert f"--model-uri {info.model_uri}: not a sindiffusion model" in err and "python_function loader: json" in err
    assert not (at.root / "never").exists()


def test_an_unreachable_tracking_server_exits_2_naming_it(at, capsys):
    args = ["sample", "--image", "img", "--no-progress", "--model-uri", "models:/sd-img@candidate", "--out", "never"]
    assert main([*args, "--set", "tracking.tracking_uri=http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "--model-uri models:/sd-img@candidate: cannot resolve it" in err and "http://127.0.0.1:9" in err


def test_checkpoint_and_model_uri_together_is_a_usage_error(at, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sample", "--image", "img", "--checkpoint", "a.pt", "--model-uri", "models:/sd-img@candidate"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_a_new_training_is_a_new_version_and_the_alias_moves(at):
    assert main(["train", "--image", "img", "--no-progress", "--set", "train.steps=4"]) == 0
    client = _client(at.uri)
    models = _models(at.uri)
    assert len(models) == 2
    newest = max(models, key=lambda m: m.creation_timestamp)
    version = client.get_model_version_by_alias("sd-img", "candidate")
    assert (str(version.version), version.source) == ("2", f"models:/{newest.model_id}")
    assert newest.tags[tracking.CHECKPOINT_SHA_TAG] == _sha(at.root / "results/img/train/model.pt")


def test_the_training_free_patch_model_is_logged_and_samples_but_is_refused_as_a_unet(tmp_path, monkeypatch, capsys):
    import mlflow

    pytest.importorskip("mlflow")
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    tiny_project(
        tmp_path,
        tracking={"enabled": True, "experiment": EXPERIMENT, "tracking_uri": uri},
        replace={"model": {"kind": "patch", "patch_size": 5, "coarsest_ratio": 1.5}},
    )
    assert main(["preprocess", "--image", "img"]) == 0
    assert main(["train", "--image", "img", "--no-progress"]) == 0
    [model] = _models(uri)
    assert model.tags["sindiffusion.model_kind"] == "patch" and model.status.to_proto() == 2
    with tracking.mlflow_uri(uri):
        x = mlflow.pyfunc.load_model(f"models:/{model.model_id}").predict({"num": 1, "height": 24, "width": 32})
    assert x.shape == (1, 3, 24, 32) and np.isfinite(x).all()
    assert main(["sample", "--image", "img", "--no-progress", "--model-uri", f"models:/{model.model_id}"]) == 0
    # a command that takes a UNet only: exit 2 naming the URI and the kind found
    capsys.readouterr()
    args = ["denoise-gap", "--model-uri", f"models:/{model.model_id}", "--out", "gap", "--points", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--model-uri models:/{model.model_id}: a model of kind 'patch'" in err and "'unet' only" in err
    assert not (tmp_path / "gap").exists()


def test_log_model_false_logs_no_model(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    tiny_project(tmp_path, tracking={**TRACKING, "tracking_uri": uri, "log_model": False}, train={"steps": 1})
    assert main(["preprocess", "--image", "img"]) == 0
    assert main(["train", "--image", "img", "--no-progress"]) == 0
    assert _models(uri) == [] and "log-model" not in capsys.readouterr().err
    client = _client(uri)
    [run] = client.search_runs(
        [client.get_experiment_by_name(EXPERIMENT).experiment_id], "tags.`sindiffusion.stage` = 'train'"
    )
    assert run.info.status == "FINISHED" and run.data.metrics["steps"] == 1


def test_a_failed_logging_warns_once_and_log_model_logs_it_later(tmp_path, monkeypatch, capsys):
    """The tracking server goes away while the model is logged: training still finishes (exit 0,
    the checkpoint written), one warning says how to log the model later, and that command works."""
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    tiny_project(tmp_path, tracking={**TRACKING, "tracking_uri": uri}, train={"steps": 2})
    assert main(["preprocess", "--image", "img"]) == 0

    def gone(*args, **kwargs):
        raise ConnectionError("server went away")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MlflowClient, "create_logged_model", gone)
        capsys.readouterr()
        assert main(["train", "--image", "img", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("WARNING") == 1 and "server went away" in err, err
    assert "`sindiffusion log-model --image img --params params.yaml`" in err
    assert (tmp_path / "results/img/train/model.pt").is_file() and _models(uri) == []

    assert main(["log-model", "--image", "img"]) == 0
    printed = capsys.readouterr().out.strip()
    [model] = _models(uri)
    assert printed == f"models:/{model.model_id}"
    assert _client(uri).get_run(model.source_run_id).info.run_name == "img/log-model"
    assert {m.key for m in model.metrics} >= {"final_loss", "steps"}
    assert _client(uri).get_model_version_by_alias("sd-img", "candidate").source == f"models:/{model.model_id}"

    # nothing to log to: tracking off is bad input (2), an unreachable server a failure (1)
    monkeypatch.setenv("SINDIFFUSION_TRACKING", "off")
    assert main(["log-model", "--image", "img"]) == 2
    monkeypatch.delenv("SINDIFFUSION_TRACKING")
    assert main(["log-model", "--image", "img", "--set", "tracking.tracking_uri=http://127.0.0.1:9"]) == 1
    assert "is unchanged" in capsys.readouterr().err and len(_models(uri)) == 1


# ---------------------------------------------------------------------------- the pyfunc model itself


@pytest.fixture(scope="module")
def pyfunc(tiny_checkpoint):
    return SinDiffusionPyfunc(tiny_checkpoint, {"sampler": "ddim", "steps": 3, "device": "cpu", "batch_size": 2})


def test_predict_takes_a_mapping_a_row_or_a_one_item_list(pyfunc):
    pd = pytest.importorskip("pandas")
    a = pyfunc.predict({"num": 2, "height": 16, "width": 16, "seed": 3})
    b = pyfunc.predict(pd.DataFrame([{"num": 2, "height": 16, "width": 16, "seed": 3}]))
    c = pyfunc.predict([{"num": 2, "height": 16, "width": 16, "seed": 3}], params={"batch_size": 1})
    assert a.shape == (2, 3, 16, 16) and np.array_equal(a, b) and np.array_equal(a, c)  # batch size: no effect


def test_predict_never_matches_or_finishes_even_if_its_config_asks(tiny_checkpoint):
    """The matching and the finish need the training image, which a logged model does not carry.
    Logging keeps only the sampling settings (``sampling_of`` drops params.yaml's ``match_steps``
    and ``finish``), but a model config written by hand may name them: it still samples plain, as
    ``sindiffusion sample`` does with ``match_steps: 0`` and ``finish: none``."""
    base = {"sampler": "ddim", "steps": 3, "device": "cpu", "batch_size": 2}
    plain = SinDiffusionPyfunc(tiny_checkpoint, base)
    asks = SinDiffusionPyfunc(tiny_checkpoint, {**base, "match_steps": 30, "finish": "nearest"})
    cfg = asks._settings({}, {})
    assert (cfg.init, cfg.match_steps, cfg.finish) == ("noise", 0, "none")
    request = {"num": 2, "height": 16, "width": 16, "seed": 1}
    assert np.array_equal(plain.predict(request), asks.predict(request))


@pytest.mark.parametrize(
    "request_,params,message",
    [
        ({"num": 1, "colour": 3}, {}, "unknown column 'colour'"),
        ([{"num": 1}, {"num": 2}], {}, "one request per call"),
        ({"num": 1.5}, {}, "num must be an integer"),
        ({"height": 4}, {}, "sample.height: must be >= 8"),
        ({"num": 1}, {"temperature": 2}, "unknown ['temperature']"),
        ({"num": 1}, {"output": "png"}, "output='png'"),
        ({"num": 1}, {"sampler": "nope"}, "sample.sampler"),
        ("a string", {}, "expected a mapping"),
    ],
)
def test_bad_predict_input_names_what_is_wrong(pyfunc, request_, params, message):
    with pytest.raises(ValueError) as err:
        pyfunc.predict(request_, params=params)
    assert message in str(err.value)


def test_resolve_refuses_a_path_and_names_the_flag(tmp_path):
    with pytest.raises(ModelUriError, match=r"^--model-uri model\.pt: not a model URI"):
        resolve_model_uri("model.pt", f"sqlite:///{tmp_path}/mlflow.db")
    assert logged_model.LOADER_MODULE == "sindiffusion.logged_model"


# ---------------------------------------------------------------------------- end to end


@pytest.mark.e2e
def test_a_tiny_pipeline_logs_a_model_that_loads_by_uri_and_samples(tmp_path):
    """Through the command line, one process per step: train logs and registers the model, then
    `sample --model-uri` and `mlflow.pyfunc.load_model(...).predict` draw from it by URI."""
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    tiny_project(tmp_path, tracking=TRACKING, train={"steps": 3})
    env = {k: v for k, v in os.environ.items() if k not in ("SINDIFFUSION_TRACKING", "MLFLOW_EXPERIMENT_NAME")}
    env.update(MLFLOW_TRACKING_URI=uri, OMP_NUM_THREADS="1")

    def run(*cmd: str) -> str:
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{cmd}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        return res.stdout + res.stderr

    cli = [sys.executable, "-m", "sindiffusion"]
    run(*cli, "preprocess", "--image", "img")
    out = run(*cli, "train", "--image", "img", "--no-progress")
    assert "registered as models:/sd-img/1, models:/sd-img@candidate" in out
    run(*cli, "sample", "--image", "img", "--no-progress")
    run(*cli, "sample", "--image", "img", "--no-progress", "--model-uri", "models:/sd-img@candidate", "--out", "by_uri")
    assert np.array_equal(_pngs(tmp_path / "by_uri"), _pngs(tmp_path / "results/img/samples"))
    script = textwrap.dedent(
        f"""
        import mlflow, numpy as np
        mlflow.set_tracking_uri({uri!r})
        model = mlflow.pyfunc.load_model("models:/sd-img@candidate")
        np.save("predicted.npy", model.predict({{"num": 2, "seed": 0}}, params={{"output": "uint8"}}))
        """
    )
    run(sys.executable, "-c", script)
    assert np.array_equal(np.load(tmp_path / "predicted.npy"), _pngs(tmp_path / "results/img/samples"))


@pytest.mark.cluster
def test_models_log_register_and_load_through_a_real_mlflow_server(mlflow_server, tmp_path, monkeypatch, capsys):
    """Against `mlflow server` (HTTP, artifacts proxied by the server): the train stage logs and
    registers the model, `sample --model-uri` and pyfunc load it back."""
    import mlflow

    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp_path)
    tracking_section = {**TRACKING, "experiment": "models-server", "register_as": "server-{image}"}
    tiny_project(tmp_path, tracking=tracking_section, train={"steps": 2})
    for cmd in (["preprocess"], ["train", "--no-progress"], ["sample", "--no-progress"]):
        assert main([*cmd, "--image", "img"]) == 0, cmd
    assert "WARNING" not in capsys.readouterr().err
    uri = "models:/server-img@candidate"
    assert main(["sample", "--image", "img", "--no-progress", "--model-uri", uri, "--out", "by_uri"]) == 0
    assert np.array_equal(_pngs(tmp_path / "by_uri"), _pngs(tmp_path / "results/img/samples"))
    with tracking.mlflow_uri(mlflow_server):
        x = mlflow.pyfunc.load_model(uri).predict({"num": 2}, params={"output": "uint8"})
    assert np.array_equal(x, _pngs(tmp_path / "results/img/samples"))
