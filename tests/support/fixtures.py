"""pytest fixtures for tests that need real services.

Import the fixtures you use into the test module (or list this module in a
conftest's ``pytest_plugins``)::

    from tests.support.fixtures import slurm_cluster, mlflow_server, artifacts_dir  # noqa: F401

Each fixture skips the test (with the reason) when the machine cannot
provide the service: run ``sudo .ci/install-system.sh`` to install Slurm,
munge and Chromium.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .browser import chromium_available
from .mlflow_server import MlflowServer, mlflow_available
from .slurm import SlurmCluster, slurm_available

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_ROOT = REPO_ROOT / "test-artifacts"  # gitignored

__all__ = [
    "slurm_cluster",
    "mlflow_server",
    "artifacts_dir",
    "require_chromium",
    "REPO_ROOT",
    "ARTIFACTS_ROOT",
]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A one-node Slurm cluster (partition ``debug``, 1 fake GPU) for the session.

    Yields a :class:`tests.support.slurm.SlurmCluster`; ``sbatch``/``squeue``
    work against it while the session runs. Skips when unavailable.
    """
    ok, reason = slurm_available()
    if not ok:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 for the session; yields its URI."""
    ok, reason = mlflow_available()
    if not ok:
        pytest.skip(reason)
    with MlflowServer(tmp_path_factory.mktemp("mlflow")) as server:
        yield server.uri


@pytest.fixture
def require_chromium():
    """Skip the test unless headless Chromium is installed."""
    ok, reason = chromium_available()
    if not ok:
        pytest.skip(reason)


@pytest.fixture
def artifacts_dir(request) -> Path:
    """``<repo>/test-artifacts/<test name>/``: files kept after the run."""
    name = request.node.name.replace("/", "_").replace("[", "_").replace("]", "")
    d = ARTIFACTS_ROOT / name
    d.mkdir(parents=True, exist_ok=True)
    return d
