"""Image names are folder names, never paths (issue 9, item 4): one check for every command and the Snakefile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sindiffusion.cli import main
from sindiffusion.paths import ImageNameError, ImagePaths, check_image_name
from tests.tiny import one_torch_thread, tiny_project  # noqa: F401

BAD_NAMES = ["../../escape", "", ".", "..", "a/b", "/tmp/abs", "x y", "a\\b", "caf\u00e9", "img\n"]

CKPT = "results/img/train/model.pt"
COMMANDS = {
    "preprocess": ["preprocess", "--source", "data/images/img.png"],
    "train": ["train"],
    "sample": ["sample"],
    "evaluate": ["evaluate"],
    "manipulate": ["manipulate"],
    "outpaint": ["outpaint", "--checkpoint", CKPT, "--left", "8", "--out", "edited"],
}


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse refuses the value itself
        return int(stop.code)


def _tree(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


@pytest.mark.parametrize("name", ["img", "places50_1", "a.b-c", "...x", "IMG-2024.v2"])
def test_plain_names_pass(name):
    assert check_image_name(name) == name and ImagePaths(name).image == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_by_the_library(name):
    with pytest.raises(ImageNameError, match="image name"):
        ImagePaths(name)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_bad_names_and_writes_nothing(trained_project, capsys, command):
    root = trained_project
    before = _tree(root.parent)
    for name in BAD_NAMES:
        assert _exit_code([*COMMANDS[command], "--image", name, "--no-progress"]) == 2, name
        err = capsys.readouterr().err
        assert "--image" in err and f"image name {name!r} is not allowed" in err, err
    assert _tree(root.parent) == before
    assert not (root.parent / "escape").exists() and not Path("/tmp/abs").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("listed", [True, False])
def test_snakefile_refuses_bad_names(tmp_path, listed):
    """The Snakefile checks params.yaml's data.images, or the image files' names, with the same function."""
    pytest.importorskip("snakemake")
    # why: the workflow tests' helpers are needed only by this e2e test (after the snakemake check)
    from tests.workflow.helpers import clean_env

    data = {"images": ["tiny_a", ".."]} if listed else {}
    root = tiny_project(tmp_path / "project", "workflow", data=data).root
    if not listed:
        (root / "data/images/tiny_a.png").rename(root / "data/images/my photo.png")
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "all"],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0
    expected = (
        "params.yaml: data.images: image name '..' is not allowed"
        if listed
        else "data/images/my photo.*: image name 'my photo' is not allowed"
    )
    assert expected in out, out[-3000:]
