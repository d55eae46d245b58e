"""Thin stages: read inputs, call the library, write outputs + metrics, log to MLflow."""
