"""``sindiffusion evaluate`` on the tiny pipeline's outputs (no pretrained weights on this machine)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sindiffusion.evaluation import WEIGHTS
from tests.tiny import cli, tiny_pipeline

WEIGHT_FREE = ("pixel_diversity", "copy_nn_dist", "copy_fraction", "patch_swd")
DEEP = ("sifid_pool1", "sifid_pool2", "lpips_diversity")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory)


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def _assert_no_random_numbers(metrics: dict) -> None:
    text = json.dumps(metrics)
    assert "random_weights" not in text
    for key in DEEP:
        assert metrics[key] is None, f"{key} must be null without pretrained weights"


def test_missing_weights_give_null_deep_metrics_with_reason(tiny, empty_torch_home, capsys):
    rc = cli("evaluate", "--params", tiny.params, "--image", tiny.images[0])
    assert rc == 0
    m = tiny.metrics(tiny.images[0])
    for key in WEIGHT_FREE:
        assert isinstance(m[key], float), key
    assert m["num_samples"] == 2 and m["image"] == tiny.images[0]
    _assert_no_random_numbers(m)
    inception, alex = WEIGHTS["inception_v3"], WEIGHTS["alexnet"]
    expected = empty_torch_home / "hub" / "checkpoints"
    for key, spec in (("sifid_pool1", inception), ("sifid_pool2", inception), ("lpips_diversity", alex)):
        reason = m["unavailable"][key]
        assert spec.filename in reason and spec.url in reason and str(expected / spec.filename) in reason
    out = capsys.readouterr()
    assert "pixel_diversity" in out.out and "n/a" in out.out
    assert inception.url in out.err and str(expected / alex.filename) in out.err


def test_metrics_are_logged_to_mlflow(tiny):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tiny.tracking_uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`sindiffusion.stage` = 'evaluate'")
    assert runs, "no evaluate run in MLflow"
    run = runs[0]
    assert set(WEIGHT_FREE) <= set(run.data.metrics)
    assert not set(DEEP) & set(run.data.metrics)  # unavailable metrics are not logged as numbers
    assert "missing weights" in run.data.tags["unavailable.sifid_pool1"]
    assert run.data.params["evaluate.sifid_layers"] == "['pool1', 'pool2']"


def test_weights_dir_with_wrong_files_is_treated_as_missing(tiny, tmp_path):
    """Files with the right names but other contents (e.g. random values) never yield numbers."""
    wdir = tmp_path / "weights"
    wdir.mkdir()
    for spec in WEIGHTS.values():
        torch.save({"not": torch.zeros(1)}, wdir / spec.filename)
    out = tmp_path / "m.json"
    rc = cli("evaluate", "--params", tiny.params, "--image", tiny.images[0], "--weights-dir", wdir, "--out", out)
    assert rc == 0
    m = json.loads(out.read_text())
    _assert_no_random_numbers(m)
    assert "SHA-256" in m["unavailable"]["lpips_diversity"] and "SHA-256" in m["unavailable"]["sifid_pool1"]


def test_random_backbone_can_never_reach_metrics_json(tiny, tmp_path, monkeypatch, empty_torch_home):
    """Even if random networks were handed to the stage, the writer refuses and nothing is written."""
    from sindiffusion.evaluation import InceptionFeatures, LPIPSAlex
    from sindiffusion.stages import evaluate

    def random_models(params, weights_dir=None, device=None):
        return {
            "sifid_pool1": InceptionFeatures("pool1", random_init=True),
            "sifid_pool2": InceptionFeatures("pool2", random_init=True),
            "lpips_diversity": LPIPSAlex(random_init=True),
        }, {}

    monkeypatch.setattr(evaluate, "load_models", random_models)
    out = tmp_path / "m.json"
    rc = cli("evaluate", "--params", tiny.params, "--image", tiny.images[0], "--out", out)
    assert rc == 1
    assert not out.exists() and not list(tmp_path.glob(".m.json*"))


def test_missing_processed_image_is_a_clear_error(tiny, tmp_path, capsys):
    results = tmp_path / "results"
    rc = cli("evaluate", "--params", tiny.params, "--image", "nope", "--set", f"data.results_dir={results}")
    assert rc == 2
    err = capsys.readouterr().err
    assert "processed training image not found" in err and "sindiffusion preprocess --image nope" in err
    assert not results.exists()


def test_no_samples_is_a_clear_error(tiny, tmp_path, capsys):
    results = tmp_path / "results"
    name = tiny.images[0]
    (results / name / "preprocess").mkdir(parents=True)
    shutil.copy(tiny.results / name / "preprocess" / "image.png", results / name / "preprocess" / "image.png")
    (results / name / "samples").mkdir()
    rc = cli("evaluate", "--params", tiny.params, "--image", name, "--set", f"data.results_dir={results}")
    assert rc == 2
    assert "no samples (sample_*.png)" in capsys.readouterr().err
    assert not (results / name / "evaluate").exists()


def test_weights_status_and_fetch(tmp_path, monkeypatch, capsys):
    wdir = tmp_path / "w"
    assert cli("weights", "status", "--weights-dir", wdir, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(WEIGHTS) and not any(r["present"] for r in rows)
    assert all(r["path"] == str(wdir / WEIGHTS[r["name"]].filename) for r in rows)

    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        with open(dst, "wb") as fh:
            fh.write(b"fake")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    assert cli("weights", "fetch", "--weights-dir", wdir, "--only", "alexnet", "--no-progress") == 0
    assert calls == [(WEIGHTS["alexnet"].url, WEIGHTS["alexnet"].hash_prefix)]
    assert str(wdir / WEIGHTS["alexnet"].filename) in capsys.readouterr().out
    assert cli("weights", "status", "--weights-dir", wdir, "--verify") == 0
    text = capsys.readouterr().out
    assert "MISSING" in text and "MISMATCH" in text  # inception absent; the fake alexnet is not the real file
    # default location follows TORCH_HOME
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert cli("weights", "fetch") == 0
    assert len(calls) == 3
    assert (tmp_path / "th" / "hub" / "checkpoints" / WEIGHTS["inception_v3"].filename).is_file()
