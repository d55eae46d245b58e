"""``--out`` never deletes a user's folder (issue 9, item 1) and never changes its permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sindiffusion.artifacts import MARKER
from sindiffusion.cli import main
from tests.tiny import one_torch_thread  # noqa: F401

CKPT = "results/img/train/model.pt"

#: One command per kind of output folder: the sample stage, the manipulate stage and a one-off edit.
COMMANDS = {
    "sample": ["sample", "--image", "img", "--num", "1"],
    "manipulate": ["manipulate", "--image", "img"],
    "outpaint": ["outpaint", "--checkpoint", CKPT, "--left", "8", "--num", "1", "--steps", "2"],
}


def _run(command: str, out: Path, *extra: str) -> int:
    return main([*COMMANDS[command], "--out", str(out), "--no-progress", *extra])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _user_folder(root: Path) -> Path:
    folder = root / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_text("\\documentclass{article}")
    os.chmod(folder, 0o750)
    return folder


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


@pytest.mark.parametrize("command", COMMANDS)
def test_a_users_folder_is_refused_and_kept(trained_project, capsys, command):
    folder = _user_folder(trained_project)
    before = _siblings(folder)
    assert _run(command, folder) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "--force" in err and "new path" in err
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]  # nothing deleted, nothing written
    assert _siblings(folder) == before  # no temporary folder left beside it
    assert _mode(folder) == 0o750


@pytest.mark.parametrize("command", COMMANDS)
def test_force_replaces_keeping_permissions(trained_project, command):
    folder = _user_folder(trained_project)
    assert _run(command, folder, "--force") == 0
    assert not (folder / "thesis.tex").exists() and (folder / MARKER).is_file()
    assert _mode(folder) == 0o750
    # the folder is now the project's: a second run replaces it without --force
    assert _run(command, folder) == 0
    assert _mode(folder) == 0o750


def test_new_and_empty_folders_get_the_usual_permissions(trained_project):
    old = os.umask(0o022)
    try:
        new = trained_project / "new" / "samples"
        assert _run("sample", new) == 0
        assert _mode(new) == 0o755  # not owner-only
        empty = trained_project / "empty"
        empty.mkdir(mode=0o775)
        os.chmod(empty, 0o775)
        assert _run("sample", empty) == 0
        assert _mode(empty) == 0o775 and (empty / "sample_000.png").is_file()
    finally:
        os.umask(old)


def test_default_output_folder_is_the_projects(trained_project):
    """results/IMAGE/samples written before owner markers existed is still replaced."""
    samples = trained_project / "results/img/samples"
    samples.mkdir(parents=True)
    (samples / "sample_000.png").write_bytes(b"old")
    assert main(["sample", "--image", "img", "--num", "1", "--no-progress"]) == 0
    assert (samples / MARKER).is_file() and (samples / "sample_000.png").read_bytes() != b"old"


def test_out_that_is_a_file_or_the_working_directory_is_refused(trained_project, capsys):
    file = trained_project / "notes.txt"
    file.write_text("keep me")
    assert _run("sample", file, "--force") == 2
    assert "not a folder" in capsys.readouterr().err and file.read_text() == "keep me"
    assert _run("sample", trained_project, "--force") == 2
    assert "working directory" in capsys.readouterr().err
    assert (trained_project / "params.yaml").is_file()


def test_evaluate_never_overwrites_a_users_file_or_writes_into_a_folder(trained_project, capsys):
    """``evaluate --out`` is a metrics file: a user's file (thesis.tex) or a folder is refused (exit 2,
    untouched); a new path, or a metrics file evaluate wrote before, is written."""
    assert main(["sample", "--image", "img", "--num", "2", "--no-progress"]) == 0
    thesis = trained_project / "thesis.tex"
    thesis.write_text("\\documentclass{article}")
    assert main(["evaluate", "--image", "img", "--out", str(thesis)]) == 2
    err = capsys.readouterr().err
    assert "thesis.tex" in err and "not a metrics file" in err
    assert thesis.read_text() == "\\documentclass{article}"
    folder = trained_project / "somewhere"
    folder.mkdir()
    assert main(["evaluate", "--image", "img", "--out", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err and not any(folder.iterdir())
    mine = trained_project / "mine.json"
    assert main(["evaluate", "--image", "img", "--out", str(mine)]) == 0
    assert main(["evaluate", "--image", "img", "--out", str(mine)]) == 0  # its own file: replaced
