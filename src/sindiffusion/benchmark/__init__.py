"""Benchmarks you run by hand (never timed unit tests)."""
