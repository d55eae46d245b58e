# Shared by all rule files (the image list, paths, resources, the final message).
# Functions live here (not in the rule files) so that `snakemake --lint` stays clean.

import json
import os
import re
from pathlib import Path

from sindiffusion.config import STAGE_SECTIONS
from sindiffusion.paths import IMAGE_NAME_PATTERN, TEMPLATES, check_image_name, find_source_image, list_images
from sindiffusion.tracking import ui_url

# The params file passed to every `sindiffusion` call (the file the Snakefile's configfile reads).
PARAMS_FILE = "params.yaml"
IMAGES_DIR = config["data"].get("images_dir", "data/images")
RESULTS = config["data"].get("results_dir", "results")
IMAGES = list(config["data"].get("images") or list_images(IMAGES_DIR))
# The names become folders under results/: the CLI's one check (no path separators, no '..').
for _name in IMAGES:
    check_image_name(_name, where=f"{PARAMS_FILE}: data.images" if config["data"].get("images")
                     else f"{IMAGES_DIR}/{_name}.*")
if not IMAGES:
    logger.warning(
        f"No images: {IMAGES_DIR}/ holds no image file and params.yaml's data.images is empty. "
        "Run `sindiffusion demo-image` (Hubble Deep Field) or copy images into it."
    )

# Final outputs of every stage; each rules/<stage>.smk appends its own.
TARGETS = []

# The rule files `include`d by the Snakefile, in a stable order (common.smk excluded).
STAGE_RULE_FILES = sorted(
    str(p) for p in Path(workflow.basedir, "rules").glob("*.smk") if p.name != "common.smk"
)

wildcard_constraints:
    image="|".join(map(re.escape, IMAGES)) if IMAGES else IMAGE_NAME_PATTERN,


def path(key, image="{image}"):
    """The artifact path ``key`` of sindiffusion.paths.TEMPLATES (``{image}`` stays a wildcard)."""
    return TEMPLATES[key].format(results=RESULTS, image=image)


def log_path(stage):
    return f"logs/{{image}}/{stage}.log"


def stage_command(stage):
    """The one command a rule runs; dvc.yaml runs the same (without --no-progress and the log)."""
    return f"sindiffusion {stage} --image {{wildcards.image}} --params {{params.file}} --no-progress > {{log}} 2>&1"


def stage_settings(stage):
    """The params.yaml sections a stage reads, as one string (an entry of each rule's params), so
    that Snakemake's `params` rerun trigger reruns exactly the stages whose sections changed
    (what the per-stage params of dvc.yaml do)."""
    return json.dumps({s: config.get(s) for s in STAGE_SECTIONS[stage]}, sort_keys=True)


def manipulate_inputs(wildcards):
    """Files the image's edits read (masks, paintings, composites): a change reruns the stage."""
    from sindiffusion.applications.config import edit_input_files

    return edit_input_files(config.get("manipulate"), wildcards.image)


def manipulate_settings(wildcards):
    """The manipulate section with only this image's edits (other images' edits do not rerun it)."""
    section = dict(config.get("manipulate") or {})
    section["edits"] = (section.get("edits") or {}).get(wildcards.image)
    return json.dumps(section, sort_keys=True)


def source_image(wildcards):
    """The raw file data.images_dir/<image>.* (a clear error if missing or ambiguous)."""
    try:
        return str(find_source_image(IMAGES_DIR, wildcards.image))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err}. Copy the image there (`sindiffusion demo-image` installs hubble.jpg), "
            "or edit data.images in params.yaml."
        ) from None


# ---- EDIT HERE: resources of every rule, in one place ------------------------------------
# Site defaults (partition, account) are in workflow/profiles/slurm/config.yaml. GPU rules ask
# for one GPU (Slurm: --gpus=1); two CPU cores feed it (the data is one image in memory). On a
# CPU-only machine the local profile raises the threads (capped at --cores). Override per run:
#   snakemake --set-resources train:runtime=1440 --set-threads train=8 ...
# A stage not named here gets DEFAULT_RESOURCES (a light CPU stage): a new stage needs no edit here.
DEFAULT_RESOURCES = {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}
RESOURCES = {
    "preprocess": {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0},
    "train": {"threads": 2, "mem_mb": 4000, "runtime": 720, "gpu": 1},
    "sample": {"threads": 2, "mem_mb": 4000, "runtime": 60, "gpu": 1},
    "evaluate": {"threads": 2, "mem_mb": 4000, "runtime": 60, "gpu": 0},
    "manipulate": {"threads": 2, "mem_mb": 4000, "runtime": 120, "gpu": 1},
}


def _resources(stage):
    return RESOURCES.get(stage, DEFAULT_RESOURCES)


def threads(stage):
    return _resources(stage)["threads"]


def mem_mb(stage):
    return _resources(stage)["mem_mb"]


def runtime(stage):
    return _resources(stage)["runtime"]


def gpus(stage):
    return _resources(stage)["gpu"]


def print_summary():
    """Printed when the whole workflow succeeded: where the results are, how to see MLflow."""
    lines = ["", "SinDiffusion pipeline finished."]
    for image in IMAGES:
        samples = path("samples", image)
        if os.path.isdir(samples):
            lines.append(f"  {image}: samples in {samples}/  (overview: {path('grid', image)})")
    tracking = config.get("tracking") or {}
    if not tracking.get("enabled", True) or os.environ.get("SINDIFFUSION_TRACKING", "").lower() in ("0", "off", "false"):
        lines.append("MLflow tracking is off; metrics are in results/<image>/train/loss.csv and metrics.json.")
    else:
        uri = tracking.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        if uri.startswith(("http://", "https://")):
            lines.append(f"MLflow runs: open {ui_url(uri)} in a browser (experiment "
                         f"'{tracking.get('experiment', 'sindiffusion')}').")
        else:
            lines.append(f"MLflow runs: mlflow ui --backend-store-uri {uri}   then open {ui_url('http://127.0.0.1:5000')}")
        lines.append(f"  (experiment '{tracking.get('experiment', 'sindiffusion')}': one run per image, "
                     "stage runs nested under it; the image run's Model metrics tab shows input and samples)")
    print("\n".join(lines))
