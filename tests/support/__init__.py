"""Test helpers that run real external services.

- :mod:`tests.support.slurm`          one-node Slurm cluster (``SlurmCluster``)
- :mod:`tests.support.mlflow_server`  a real ``mlflow server`` (``MlflowServer``)
- :mod:`tests.support.browser`        headless Chromium screenshots
- :mod:`tests.support.fixtures`       pytest fixtures ``slurm_cluster``,
  ``mlflow_server``, ``artifacts_dir`` built on the above

Use the fixtures in a test module with::

    from tests.support.fixtures import slurm_cluster, mlflow_server  # noqa: F401
"""
