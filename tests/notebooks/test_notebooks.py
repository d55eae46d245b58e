"""Every notebook in notebooks/ runs against the tiny pipeline's outputs, and is stored without outputs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.tiny import cli, tiny_pipeline

pytestmark = pytest.mark.e2e  # the end-to-end tier: `python -m pytest -m e2e`

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_on_tiny_pipeline(path, tmp_path_factory, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    tiny = tiny_pipeline(tmp_path_factory)
    bench = tiny_benchmark(tiny, tmp_path, monkeypatch)
    monkeypatch.setenv("SINDIFFUSION_BENCHMARK_DIR", str(bench))
    monkeypatch.setenv("SINDIFFUSION_TRACKING_URI", tiny.tracking_uri)
    monkeypatch.setenv("SINDIFFUSION_EXPERIMENT", "tiny")
    monkeypatch.setenv("SINDIFFUSION_RESULTS_DIR", str(tmp_path / "no-local-results"))  # force MLflow artifacts
    monkeypatch.delenv("SINDIFFUSION_TRACKING", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tiny.root)}})
    client.execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if o.get("output_type") == "stream")
    for image in tiny.images:
        assert image in text
    assert "unavailable: sifid_pool1" in text  # reasons shown, no numbers from random weights
    data = [o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    # one figure per image (training image + samples, downloaded from MLflow), the loss curves, the scatter,
    # the benchmark's contact sheet
    assert sum("image/png" in d for d in data) >= len(tiny.images) + 3
    assert "SinGAN" in json.dumps(data) and "no pictures found" not in text
    assert "benchmark: 1 images (tiny_a); arms: sindiffusion = " in text
    tables = [d["text/html"] for d in data if "patch_swd" in str(d.get("text/html", ""))]
    assert len(tables) >= 3 and all("SinGAN" in t for t in tables[-2:])  # benchmark means, per image


def tiny_benchmark(tiny, tmp_path: Path, monkeypatch) -> Path:
    """A one-image benchmark of the tiny pipeline's config (2 training steps) with a SinGAN baseline."""
    from PIL import Image

    base = tmp_path / "baselines" / "singan"
    base.mkdir(parents=True)
    Image.open(tiny.root / "images" / "tiny_a.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(base / "tiny_a.png")
    monkeypatch.setenv("TORCH_HOME", str(tiny.torch_home))
    out = tmp_path / "benchmark"
    rc = cli("benchmark", "--params", tiny.params, "--images-dir", tiny.root / "images", "--images", "tiny_a",
             "--out", out, "--baselines", tmp_path / "baselines", "--set", "train.steps=2",
             "--set", "tracking.enabled=false", "--no-progress")
    assert rc == 0
    return out


def _assert_stripped(raw: str, name: str) -> None:
    nb = json.loads(raw)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{name} cell {i} has outputs: strip them"
            assert cell.get("execution_count") is None, f"{name} cell {i} has an execution_count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_outputs_are_stripped(path):
    _assert_stripped(path.read_text(), path.name)
    rel = path.relative_to(REPO).as_posix()
    for ref in (":" + rel, "HEAD:" + rel):  # the staged and the committed version, when there are
        shown = subprocess.run(["git", "show", ref], cwd=REPO, capture_output=True, text=True)
        if shown.returncode == 0:
            _assert_stripped(shown.stdout, f"{ref}")
