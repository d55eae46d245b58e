"""Shared pytest configuration: fixtures for real services live in tests/support/."""

import os

# Tests never talk to a user's MLflow server or write ./mlflow.db unless they ask for it.
os.environ.setdefault("SINDIFFUSION_TRACKING", "off")

pytest_plugins = ["tests.support.fixtures"]
