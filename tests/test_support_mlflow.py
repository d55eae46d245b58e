"""The MLflow-server fixture and the headless-Chromium screenshot helper."""

from __future__ import annotations

import numpy as np
import pytest

# Fixtures (mlflow_server, artifacts_dir, require_chromium) come from tests/conftest.py.
from tests.support.browser import colors_present, mlflow_run_url, png_is_blank, screenshot

pytestmark = pytest.mark.cluster  # the cluster tier: `python -m pytest -m cluster`


def _block_image(seed: int = 0, blocks: int = 8, px: int = 16) -> tuple[np.ndarray, list]:
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 256, size=(blocks, blocks, 3), dtype=np.uint8)
    img = np.kron(colors, np.ones((px, px, 1), dtype=np.uint8))
    return img, [tuple(c) for c in colors.reshape(-1, 3)]


def test_mlflow_server_ui_shows_logged_image(mlflow_server, require_chromium, artifacts_dir, tmp_path):
    import mlflow
    from PIL import Image

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    exp_id = client.create_experiment("support-smoke")
    img, colors = _block_image()
    grid = tmp_path / "grid.png"
    Image.fromarray(img).save(grid)

    mlflow.set_tracking_uri(mlflow_server)
    try:
        with mlflow.start_run(experiment_id=exp_id, run_name="support-smoke") as run:
            mlflow.log_param("lr", 1e-3)
            for step, loss in enumerate((0.5, 0.3, 0.2)):
                mlflow.log_metric("loss", loss, step=step)
            mlflow.log_image(img, key="samples", step=0)
            mlflow.log_artifact(str(grid))
    finally:
        mlflow.set_tracking_uri(None)
    run_id = run.info.run_id
    names = {a.path for a in client.list_artifacts(run_id)}
    assert "grid.png" in names

    def shows_image(png) -> bool:
        return colors_present(png, colors) >= 0.4

    # the logged image, in the run's "Model metrics" tab
    shot = screenshot(
        mlflow_run_url(mlflow_server, exp_id, run_id, "model-metrics"),
        artifacts_dir / "mlflow-run-model-metrics.png",
        ready=shows_image,
    )
    assert shot.exists() and shot.stat().st_size > 10_000
    assert not png_is_blank(shot)
    assert shows_image(shot), f"logged image not visible in {shot}"

    # the artifact file, previewed in the artifact browser
    shot2 = screenshot(
        mlflow_run_url(mlflow_server, exp_id, run_id, "artifacts/grid.png"),
        artifacts_dir / "mlflow-run-artifact-grid.png",
        ready=shows_image,
    )
    assert not png_is_blank(shot2)
    assert shows_image(shot2), f"grid.png not visible in {shot2}"
