"""Bad input files (issue 9): every command refuses an unusable checkpoint or source image with
exit status 2, a message naming the file, and nothing written."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from sindiffusion.cli import main
from tests.stages._tiny import one_torch_thread  # noqa: F401


class _Payload:
    """Pickled code: ``torch.load(weights_only=True)`` must refuse to run it."""

    def __reduce__(self):
        return (print, ("this ran",))


def _bad_checkpoint(root: Path, kind: str) -> Path:
    path = root / f"bad-{kind}.pt"
    model = (root / "results/img/train/model.pt").read_bytes()
    if kind == "missing":
        return path
    path.write_bytes(
        {
            "empty": b"",
            "text": b"not a checkpoint\n",
            "truncated": model[: len(model) // 2],
            "image": (root / "results/img/preprocess/image.png").read_bytes(),
            "pickled-code": pickle.dumps({"format": "sindiffusion-checkpoint", "x": _Payload()}),
        }[kind]
    )
    return path


CHECKPOINTS = ["missing", "empty", "text", "truncated", "image", "pickled-code"]
COMMANDS = {
    "sample": ["sample", "--image", "img"],
    "manipulate": ["manipulate", "--image", "img"],
    "outpaint": ["outpaint", "--left", "8", "--out", "edited"],
    "resize": ["resize", "--width", "64", "--out", "edited"],
}


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("command", COMMANDS)
def test_unusable_checkpoints_are_refused(trained_project, capsys, command):
    root = trained_project
    if command == "manipulate":  # the stage reads the checkpoint only when the image has edits
        params = (
            root / "params.yaml"
        ).read_text() + "manipulate:\n  edits:\n    img:\n    - {name: wide, kind: outpaint, left: 8}\n"
        (root / "params.yaml").write_text(params)
    paths = {kind: _bad_checkpoint(root, kind) for kind in CHECKPOINTS}
    before = _tree(root)
    for kind, path in paths.items():
        assert _exit_code([*COMMANDS[command], "--checkpoint", str(path), "--no-progress"]) == 2, kind
        captured = capsys.readouterr()
        assert str(path) in captured.err and "Traceback" not in captured.err, (kind, captured.err)
        assert "this ran" not in captured.out, kind
        assert _tree(root) == before, kind


@pytest.mark.parametrize("content", ["missing", "empty", "text", "truncated-png"])
def test_unusable_source_images_are_refused(trained_project, capsys, content):
    root = trained_project
    source = root / "upload.png"
    good = (root / "data/images/img.png").read_bytes()
    if content != "missing":
        source.write_bytes({"empty": b"", "text": b"hello\n", "truncated-png": good[: len(good) // 2]}[content])
    before = _tree(root)
    assert _exit_code(["preprocess", "--image", "new", "--source", str(source)]) == 2
    err = capsys.readouterr().err
    assert str(source) in err and "Traceback" not in err, err
    assert _tree(root) == before
