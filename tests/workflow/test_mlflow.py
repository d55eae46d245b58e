"""MLflow tracking of the pipeline against a real `mlflow server`, checked through the REST API
and in the UI (headless Chromium); and a stage that survives an unreachable server."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest

from sindiffusion import tracking
from tests.support.browser import mlflow_run_url, page_text, png_is_blank, screenshot
from tests.tiny import RECIPES, tiny_params, tiny_project

from .helpers import PROFILES, clean_env, run, snakemake

TINY_IMAGES = RECIPES["workflow"].images  # the projects' images

EXPERIMENT = "workflow-tiny"
STAGES = ("preprocess", "train", "sample", "evaluate", "manipulate")


def _shows_colour_image(png) -> bool:
    """The MLflow UI is grey/white/blue (+ a pink assistant icon); the logged samples bring
    saturated yellows, greens and cyans: at least 3 of those 30-degree hue bins must be present."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        hsv = np.asarray(im.convert("HSV")).astype(int)
    hue, sat, val = hsv[..., 0] * 360 // 255, hsv[..., 1], hsv[..., 2]
    hist = np.histogram(hue[(sat > 100) & (val > 60)], bins=12, range=(0, 360))[0]
    return int((hist[1:6] > 100).sum()) >= 3


@pytest.mark.cluster
def test_pipeline_logs_to_mlflow_server(mlflow_server, require_chromium, artifacts_dir, tmp_path, monkeypatch):
    from mlflow.entities import LoggedModelStatus
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    root = tiny_project(tmp_path, "workflow", tracking={"experiment": EXPERIMENT}).root
    env = clean_env(MLFLOW_TRACKING_URI=mlflow_server, SINDIFFUSION_TRACKING=None)
    res = snakemake(
        root,
        "--profile",
        str(PROFILES / "local"),
        "--cores",
        "2",
        "all",
        env=env,
        timeout=900,
        log_name="snakemake.log",
    )
    assert res.returncode == 0, res.stdout[-5000:]
    assert f"MLflow runs: open {mlflow_server}" in res.stdout

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = {r.data.tags["sindiffusion.image"]: r for r in runs if r.data.tags.get("sindiffusion.kind") == "image"}
    assert sorted(parents) == sorted(TINY_IMAGES)
    sample_runs, train_runs = {}, {}
    for image, parent in parents.items():
        assert parent.info.run_name == image
        children = {
            r.data.tags["sindiffusion.stage"]: r
            for r in runs
            if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        }
        # manipulate opens a run only for images with edits (the workflow recipe's: tiny_a)
        expected = [s for s in STAGES if s != "manipulate" or image in tiny_params("workflow")["manipulate"]["edits"]]
        assert sorted(children) == sorted(expected), image
        for stage, r in children.items():
            assert r.info.status == "FINISHED", (image, stage)
            assert r.info.run_name == f"{image}/{stage}"
            assert "git_commit" in r.data.params and r.data.params["image"] == image
        # params: the sections the stage reads, flattened
        assert children["preprocess"].data.params["preprocess.max_size"] == "48"
        assert children["preprocess"].data.params["model.base_channels"] == "8"
        train = children["train"]
        assert train.data.params["train.steps"] == "15" and train.data.params["diffusion.timesteps"] == "100"
        assert train.data.params["device"].startswith("cpu")
        loss = client.get_metric_history(train.info.run_id, "loss")
        assert sorted(m.step for m in loss) == [5, 10, 15]
        assert train.data.metrics["it_per_s"] > 0
        assert train.data.tags["checkpoint.path"] == f"results/{image}/train/model.pt"
        assert len(train.data.tags["checkpoint.sha256"]) == 64
        sample = children["sample"]
        assert sample.data.params["sample.num_samples"] == "2"
        for key in ("sample_seconds", "seconds_per_sample", "seconds_per_step"):
            assert sample.data.metrics[key] > 0
        images = [a.path for a in client.list_artifacts(sample.info.run_id, "images")]
        assert any("samples_grid" in p for p in images), images
        assert any(a.path == "grid.png" for a in client.list_artifacts(sample.info.run_id))
        pre_images = [a.path for a in client.list_artifacts(children["preprocess"].info.run_id, "images")]
        assert any("input" in p for p in pre_images), pre_images
        sample_runs[image] = sample
        train_runs[image] = train
    (artifacts_dir / "runs.json").write_text(
        json.dumps(
            {img: {"run_id": r.info.run_id, "metrics": r.data.metrics} for img, r in sample_runs.items()}, indent=2
        )
    )

    # the UI. The image's parent run shows input + sample grid in its "Model metrics" tab (a
    # stage run's image cards list all its params above the image, hiding it); the sample run's
    # artifact browser previews grid.png.
    parent = parents["tiny_a"]
    parent_images = [a.path for a in client.list_artifacts(parent.info.run_id, "images")]
    assert any("samples_grid" in p for p in parent_images) and any("input" in p for p in parent_images)
    shots = {
        "mlflow-image-run-model-metrics.png": mlflow_run_url(
            mlflow_server, exp.experiment_id, parent.info.run_id, "model-metrics"
        ),
        "mlflow-sample-run-artifact-grid.png": mlflow_run_url(
            mlflow_server, exp.experiment_id, sample_runs["tiny_a"].info.run_id, "artifacts/grid.png"
        ),
        "mlflow-sample-run-model-metrics.png": mlflow_run_url(
            mlflow_server, exp.experiment_id, sample_runs["tiny_a"].info.run_id, "model-metrics"
        ),
    }
    for name, url in shots.items():
        check = None if name == "mlflow-sample-run-model-metrics.png" else _shows_colour_image
        shot = screenshot(url, artifacts_dir / name, ready=check)
        print(f"screenshot: {shot} ({url})")
        assert shot.stat().st_size > 10_000 and not png_is_blank(shot), shot
    for name in ("mlflow-image-run-model-metrics.png", "mlflow-sample-run-artifact-grid.png"):
        assert _shows_colour_image(artifacts_dir / name), f"no sample grid visible in {artifacts_dir / name}"

    # the experiment's Models tab: one ready logged model per image, logged from its train run
    models = {m.name: m for m in client.search_logged_models([exp.experiment_id])}
    assert sorted(models) == sorted(TINY_IMAGES), sorted(models)
    for image, model in models.items():
        assert model.status == LoggedModelStatus.READY, (image, model.status)
        assert model.source_run_id == train_runs[image].info.run_id, image
    url = f"{mlflow_server}/#/experiments/{exp.experiment_id}/models{tracking.UI_QUERY}"
    shot = screenshot(url, artifacts_dir / "mlflow-experiment-models-tab.png")
    print(f"screenshot: {shot} ({url})")
    assert shot.stat().st_size > 10_000 and not png_is_blank(shot), shot
    text = page_text(url)  # what the screenshot shows, as text (the Models table is no image to test pixels of)
    (artifacts_dir / "mlflow-experiment-models-tab.txt").write_text(text)
    assert "Models Table view" in text and "Model name Status" in text, text[:2000]
    for image in TINY_IMAGES:
        assert f"{image} Ready" in text and f"{image}/train" in text, text[:2000]

    # the experiment opens on the training runs table, whose Dataset column names each model's
    # training image: the experiment is typed as classic ML/DL, and the link the pipeline prints
    # selects MLflow 3.17's "Model training" view (its UI follows a browser-wide switch, default GenAI)
    experiment = _rest(mlflow_server, "experiments/get-by-name", {"experiment_name": EXPERIMENT})["experiment"]
    assert {"key": tracking.EXPERIMENT_KIND_TAG, "value": tracking.EXPERIMENT_KIND} in experiment["tags"]
    found = _rest(
        mlflow_server,
        "runs/search",
        {"experiment_ids": [exp.experiment_id], "max_results": 100, "filter": "tags.`sindiffusion.stage` = 'train'"},
    )["runs"]
    found += [
        p
        for p in _rest(
            mlflow_server,
            "runs/search",
            {"experiment_ids": [exp.experiment_id], "filter": "tags.`sindiffusion.kind` = 'image'"},
        )["runs"]
    ]
    digests = {}
    for r in found:
        image = next(t["value"] for t in r["data"]["tags"] if t["key"] == "sindiffusion.image")
        sha = hashlib.sha256((root / "results" / image / "preprocess" / "image.png").read_bytes()).hexdigest()
        (given,) = r["inputs"]["dataset_inputs"]
        assert (given["dataset"]["name"], given["dataset"]["digest"]) == (image, sha[: tracking.DIGEST_CHARS])
        assert {"key": "mlflow.data.context", "value": "training"} in given["tags"]
        digests[image] = sha[: tracking.DIGEST_CHARS]
    assert len(found) == 2 * len(TINY_IMAGES) and sorted(digests) == sorted(TINY_IMAGES)
    assert f"MLflow runs: open {tracking.ui_url(mlflow_server)} " in res.stdout
    url = tracking.ui_url(mlflow_server, exp.experiment_id)
    shot = screenshot(url, artifacts_dir / "mlflow-experiment-runs-table.png")
    print(f"screenshot: {shot} ({url})")
    assert shot.stat().st_size > 10_000 and not png_is_blank(shot), shot
    text = page_text(url)
    (artifacts_dir / "mlflow-experiment-runs-table.txt").write_text(text)
    assert "Run Name" in text and "Dataset" in text and "Evaluation runs" not in text, text[:2000]
    for image, digest in digests.items():
        assert f"{image} ({digest}) training" in text, text[:2000]


def _rest(server: str, endpoint: str, body: dict) -> dict:
    """One MLflow REST API call (GET with a query for ``get-by-name``, else POST JSON)."""
    import urllib.parse
    import urllib.request

    url = f"{server}/api/2.0/mlflow/{endpoint}"
    if endpoint.endswith("get-by-name"):
        req = urllib.request.Request(f"{url}?{urllib.parse.urlencode(body)}")
    else:
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.e2e
def test_unreachable_tracking_server_warns_and_keeps_local_metrics(tmp_path):
    root = tiny_project(tmp_path, "workflow", images={"tiny_a": (40, 48)}).root
    env = clean_env(MLFLOW_TRACKING_URI="http://127.0.0.1:9", SINDIFFUSION_TRACKING=None)
    for stage in ("preprocess", "train"):
        res = run(
            [
                sys.executable,
                "-m",
                "sindiffusion",
                stage,
                "--image",
                "tiny_a",
                "--params",
                "params.yaml",
                "--no-progress",
            ],
            root,
            env,
            timeout=300,
        )
        assert res.returncode == 0, res.stdout[-3000:]
        assert "WARNING: MLflow tracking unavailable" in res.stdout and "127.0.0.1:9" in res.stdout, res.stdout
    assert "still written to results/tiny_a/train/loss.csv" in res.stdout
    rows = (root / "results/tiny_a/train/loss.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 4
    assert json.loads((root / "results/tiny_a/train/metrics.json").read_text())["steps"] == 15
    assert not (root / "mlflow.db").exists()
