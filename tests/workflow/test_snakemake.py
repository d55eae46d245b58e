"""The Snakemake workflow: lint, schema validation, dry run, and a real local run of the tiny pipeline."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from sindiffusion.paths import TEMPLATES
from tests.tiny import RECIPES, edit_params, tiny_project

from .helpers import PROFILES, REPO_ROOT, dry_run_jobs, snakemake

TINY_IMAGES = RECIPES["workflow"].images  # the projects' images

pytestmark = pytest.mark.e2e  # the end-to-end tier: `python -m pytest -m e2e`

STAGES = ("preprocess", "train", "sample", "evaluate", "manipulate")


def test_lint_is_clean(tmp_path):
    root = tiny_project(tmp_path, "workflow").root
    res = snakemake(root, "--lint")
    assert res.returncode == 0, res.stdout
    assert "good condition" in res.stdout


def test_lint_is_clean_on_the_repository_params():
    """The repository's own params.yaml (images listed, none present is fine for --lint)."""
    res = snakemake(
        REPO_ROOT,
        "--lint",
        "--snakefile",
        str(REPO_ROOT / "workflow" / "Snakefile"),
        "--directory",
        str(REPO_ROOT),
        "--nolock",
    )
    assert res.returncode == 0, res.stdout


def test_dry_run_lists_one_job_per_stage_and_image(tmp_path):
    root = tiny_project(tmp_path, "workflow").root
    res = snakemake(root, "-n", "-p", "--cores", "1", "all")
    assert res.returncode == 0, res.stdout
    jobs = dry_run_jobs(res.stdout)
    names = sorted(TINY_IMAGES)
    assert sorted(j["rule"] for j in jobs) == sorted(["all"] + [s for s in STAGES for _ in names])
    for job in jobs:
        if job["rule"] == "all":
            continue
        image = next(n for n in names if f"--image {n} " in job["shell"])
        assert job["shell"].startswith(f"sindiffusion {job['rule']} --image {image} --params params.yaml")
        assert f"> logs/{image}/{job['rule']}.log 2>&1" in job["shell"]
    outputs = {o for j in jobs for o in j["output"]}
    for name in names:
        for key in (
            "processed",
            "processed_meta",
            "checkpoint",
            "loss",
            "train_metrics",
            "loss_plot",
            "samples",
            "eval_metrics",
            "manipulate",
        ):
            assert TEMPLATES[key].format(results="results", image=name) in outputs
        assert TEMPLATES["resume"].format(results="results", image=name) not in outputs


def test_a_new_rule_file_runs_with_default_resources(tmp_path):
    """A stage's rule file is included without a Snakefile edit and, absent from common.smk's
    RESOURCES, gets DEFAULT_RESOURCES (docs/extending.md, "A pipeline stage")."""
    root = tiny_project(tmp_path, "workflow").root
    (root / "workflow" / "rules" / "sheet.smk").write_text(
        "rule sheet:\n"
        "    input:\n        path('samples'),\n"
        "    output:\n        RESULTS + '/{image}/sheet/sheet.png',\n"
        "    log:\n        log_path('sheet'),\n"
        "    threads: threads('sheet')\n"
        "    resources:\n        mem_mb=mem_mb('sheet'),\n"
        "        runtime=runtime('sheet'),\n        gpu=gpus('sheet'),\n"
        "    shell:\n        'sindiffusion sheet --image {wildcards.image} > {log} 2>&1'\n\n\n"
        "TARGETS.extend(expand(RESULTS + '/{image}/sheet/sheet.png', image=IMAGES))\n"
    )
    res = snakemake(root, "-n", "-p", "--cores", "1", "all")
    assert res.returncode == 0, res.stdout
    sheets = [j for j in dry_run_jobs(res.stdout) if j["rule"] == "sheet"]
    assert len(sheets) == len(TINY_IMAGES)
    blocks = re.findall(r"rule sheet:\n(.*?)\nShell command", res.stdout, re.S)
    resources = [dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", b).group(1).split(", ")) for b in blocks]
    assert [(r["gpu"], r["runtime"], r["mem_mb"]) for r in resources] == [("0", "30", "2000")] * len(TINY_IMAGES)


def test_image_list_restricts_the_targets(tmp_path):
    root = tiny_project(tmp_path, "workflow", data={"images": ["tiny_b"]}).root
    res = snakemake(root, "-n", "--cores", "1", "all")
    assert res.returncode == 0, res.stdout
    assert "tiny_b" in res.stdout and "tiny_a" not in res.stdout


def test_missing_listed_image_fails_with_its_name(tmp_path):
    root = tiny_project(tmp_path, "workflow", data={"images": ["nope"]}).root
    res = snakemake(root, "-n", "--cores", "1", "all")
    assert res.returncode != 0
    assert "data/images/nope.*: no such image" in res.stdout


def test_schema_rejects_bad_params(tmp_path):
    root = tiny_project(tmp_path, "workflow", train={"steps": "many"}).root
    res = snakemake(root, "-n", "--cores", "1", "all")
    assert res.returncode != 0
    assert "steps" in res.stdout and "many" in res.stdout


@pytest.mark.parametrize(
    "params_file", ["params.yaml", "configs/paper.yaml", "configs/gpu-fast.yaml", "configs/patch.yaml"]
)
def test_shipped_params_files_pass_the_schema(params_file):
    from snakemake.utils import validate

    path = REPO_ROOT / params_file
    if not path.exists():
        pytest.skip(f"{params_file} not in this checkout")
    validate(yaml.safe_load(path.read_text()), str(REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"))


def test_local_profile_runs_the_tiny_pipeline(tmp_path, artifacts_dir):
    """`snakemake --profile workflow/profiles/local all` (the README's command) end to end, then
    `snakemake --report report.html` from the same run."""
    root = tiny_project(tmp_path, "workflow", images={"tiny_a": TINY_IMAGES["tiny_a"]}).root
    res = snakemake(
        root, "--profile", str(PROFILES / "local"), "--cores", "2", "all", timeout=600, log_name="snakemake.log"
    )
    assert res.returncode == 0, res.stdout[-5000:]
    samples = root / "results/tiny_a/samples"
    files = sorted(p.name for p in samples.iterdir() if not p.name.startswith("."))
    assert files == ["grid.png", "sample_000.png", "sample_001.png", "samples.json"]
    metrics = json.loads((root / "results/tiny_a/train/metrics.json").read_text())
    assert metrics["steps"] == 15
    assert (root / "results/tiny_a/train/resume/latest.pt").is_file()
    for stage in STAGES:
        assert (root / f"logs/tiny_a/{stage}.log").is_file()
    # the final message: where the samples are, how to open MLflow
    assert "samples in results/tiny_a/samples/" in res.stdout
    assert "MLflow" in res.stdout
    _check_report(root, artifacts_dir)
    # nothing to do the second time
    again = snakemake(root, "--profile", str(PROFILES / "local"), "--cores", "2", "all")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout, again.stdout[-3000:]
    # a changed sample section reruns `sample` and what reads its output (params rerun trigger, like DVC params)
    edit_params(root / "params.yaml", sample={"seed": 1})
    dry = snakemake(root, "-n", "--cores", "1", "all")
    # the changed section reruns its stage and what depends on its output (evaluate)
    assert sorted(j["rule"] for j in dry_run_jobs(dry.stdout)) == ["all", "evaluate", "sample"], dry.stdout[-3000:]


def _check_report(root, artifacts_dir):
    """`snakemake --report report.html` holds each image's report() outputs with their captions;
    opened in headless Chromium (when installed) it shows the sample grid."""
    import base64

    from tests.support.browser import chromium_available, png_is_blank, screenshot

    from .test_mlflow import _shows_colour_image

    res = snakemake(root, "--report", "report.html", log_name="report.log")
    assert res.returncode == 0, res.stdout[-5000:]
    html = (root / "report.html").read_text()
    added = {line.split()[1] for line in res.stdout.splitlines() if line.startswith("Adding ")}
    assert {"grid.png", "sample_000.png", "loss.png", "loss.csv", "metrics.json", "result.png"} <= added, res.stdout
    grid = TEMPLATES["grid"].format(results="results", image="tiny_a")
    assert base64.b64encode((root / grid).read_bytes()).decode() in html  # the grid itself, embedded
    assert "Sample grid of image" in html and "Training loss of the model of image" in html  # captions
    assert "wide</tt> of image" in html  # the edit's caption names it
    ok, reason = chromium_available()
    if not ok:
        print(f"report not opened in a browser: {reason}")
        return
    # The report is a single-page app without URL routes: open it on the grid's view, as a click
    # on the grid in category tiny_a / Samples does.
    show = (
        "<script>window.addEventListener('load', () => setTimeout(() => app.setView("
        f"{{content: 'img', contentPath: results['{grid}'].data_uri, resultPath: '{grid}'}}), 200));</script>"
    )
    page = root / "report-open-grid.html"
    head, tail = html.rsplit("</body>", 1)
    page.write_text(head + show + "</body>" + tail)
    shot = screenshot(
        page.as_uri(), artifacts_dir / "snakemake-report-grid.png", wait_ms=5000, ready=_shows_colour_image
    )
    print(f"screenshot: {shot}")
    assert not png_is_blank(shot) and _shows_colour_image(shot), f"no sample grid visible in {shot}"
