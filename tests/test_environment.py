"""environment.yml (conda users) and pyproject.toml (pip users) declare the same dependencies."""

from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_pip_section_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(p for p in pip if p != "-e .") == sorted(deps)
    assert "-e ." in pip


def test_readme_test_commands_are_what_ci_runs():
    """Every tier README.md names runs in CI, and CI runs no tier README.md does not name."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    in_ci = [line.split("#")[0].strip() for line in ci.splitlines() if line.strip().startswith("python -m pytest")]
    in_readme = [line.strip() for line in readme.splitlines() if line.strip().startswith("python -m pytest")]
    assert in_ci == in_readme == ["python -m pytest", "python -m pytest -m e2e", "python -m pytest -m cluster"]
