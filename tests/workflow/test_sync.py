"""dvc.yaml and the Snakemake rules describe the same pipeline: same stages, commands, paths.

Both spell the paths of sindiffusion.paths.TEMPLATES; both declare exactly the params.yaml
sections each stage reads (sindiffusion.config.STAGE_SECTIONS).
"""

from __future__ import annotations

import re

import pytest
import yaml

from sindiffusion.config import STAGE_SECTIONS
from sindiffusion.paths import TEMPLATES
from tests.tiny import tiny_project

from .helpers import REPO_ROOT, dry_run_jobs, snakemake

DVC_VARS = {"${data.results_dir}": "{results}", "${item}": "{image}"}


def _dvc_stages() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def _dvc_paths(entries: list) -> list[str]:
    out = []
    for e in entries or []:
        out.append(next(iter(e)) if isinstance(e, dict) else e)
    return out


def _as_template(path: str) -> str:
    for var, tpl in DVC_VARS.items():
        path = path.replace(var, tpl)
    return path


def test_dvc_paths_are_the_package_templates():
    templates = set(TEMPLATES.values())
    for name, stage in _dvc_stages().items():
        assert stage["foreach"] == "${data.images}", name
        do = stage["do"]
        for path in _dvc_paths(do.get("outs")) + _dvc_paths(do.get("metrics")) + _dvc_paths(do.get("plots")):
            assert _as_template(path) in templates, f"{name}: {path} is not a sindiffusion.paths template"
        for path in _dvc_paths(do.get("deps")):
            if "${item}" in path:
                assert _as_template(path) in templates, f"{name}: dependency {path}"


def test_dvc_top_level_entries_are_the_first_images_templates():
    """The top-level metrics/plots/artifacts of dvc.yaml: DVC resolves them without foreach, so they
    name the first listed image (${data.images.0}), with sindiffusion.paths templates; a top-level
    plot never repeats a stage's plot (DVC would draw that file twice)."""
    doc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    first = {"${data.results_dir}": "{results}", "${data.images.0}": "{image}"}

    def template(path: str) -> str:
        for var, tpl in first.items():
            path = path.replace(var, tpl)
        return path

    assert [template(p) for p in _dvc_paths(doc["metrics"])] == [TEMPLATES["samples_meta"]]
    assert [template(p) for p in _dvc_paths(doc["plots"])] == [TEMPLATES["grid"]]
    ((name, artifact),) = doc["artifacts"].items()
    assert name == "${data.images.0}-model" and artifact["type"] == "model"
    assert template(artifact["path"]) == TEMPLATES["checkpoint"]
    stage_plots = {_as_template(p) for st in _dvc_stages().values() for p in _dvc_paths(st["do"].get("plots"))}
    assert not stage_plots & {template(p) for p in _dvc_paths(doc["plots"])}


def test_dvc_params_are_the_sections_each_stage_reads():
    for name, stage in _dvc_stages().items():
        assert sorted(stage["do"]["params"]) == sorted(STAGE_SECTIONS[name]), name


@pytest.mark.e2e
def test_snakemake_and_dvc_run_the_same_stages_commands_and_outputs(tmp_path):
    root = tiny_project(tmp_path, "workflow", images={"tiny_a": (40, 48)}, list_images=True).root
    res = snakemake(root, "-n", "-p", "--forceall", "--cores", "1", "all")
    assert res.returncode == 0, res.stdout
    jobs = {j["rule"]: j for j in dry_run_jobs(res.stdout) if j["rule"] != "all"}
    stages = _dvc_stages()
    assert set(jobs) == set(stages), "Snakemake rules and dvc.yaml stages differ"

    results = yaml.safe_load((root / "params.yaml").read_text())["data"]["results_dir"]
    for name, stage in stages.items():
        do = stage["do"]
        # the command: Snakemake adds only --no-progress and the log redirection
        dvc_cmd = do["cmd"].replace("${item}", "tiny_a")
        smk_cmd = re.sub(r"\s*>\s*\S+\s+2>&1\s*$", "", jobs[name]["shell"]).replace(" --no-progress", "")
        assert smk_cmd == dvc_cmd, name
        assert dvc_cmd.startswith(f"sindiffusion {name} ")
        # the outputs: DVC outs + metrics + plots == Snakemake outputs
        dvc_outs = {
            _as_template(p).format(results=results, image="tiny_a")
            for key in ("outs", "metrics", "plots")
            for p in _dvc_paths(do.get(key))
        }
        assert dvc_outs == set(jobs[name]["output"]), name


def test_snakemake_params_trigger_uses_the_stage_sections():
    """The rules pass stage_settings(stage) == the STAGE_SECTIONS of that stage."""
    for stage in ("preprocess", "train", "sample"):
        text = (REPO_ROOT / "workflow" / "rules" / f"{stage}.smk").read_text()
        assert f'stage_settings("{stage}")' in text
        assert f'stage_command("{stage}")' in text
        assert f'log_path("{stage}")' in text
    common = (REPO_ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(r"^from sindiffusion\.paths import .*\bTEMPLATES\b", common, re.M)
    assert "STAGE_SECTIONS[stage]" in common
