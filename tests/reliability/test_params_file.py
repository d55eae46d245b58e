"""A params file that is empty, truncated, an alias bomb or repeats a key is refused (issue 28, items 5 and 7):
exit 2, a one-line message naming the file (and the key or the missing sections), nothing written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from sindiffusion import config
from sindiffusion.cli import main
from sindiffusion.config import ConfigError, load_params
from tests.tiny import tiny_params, tiny_project, write_params_file

#: The pipeline commands and the sections each must find written in the file.
COMMANDS = {
    "preprocess": ("data", "preprocess", "model"),
    "train": ("data", "model", "diffusion", "train"),
    "sample": ("data", "sample"),
}


def _project(root: Path, text: str) -> Path:
    return tiny_project(root, params_text=text).params


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _refused(root: Path, argv: list[str], capsys) -> str:
    """Run ``argv`` in ``root``: exit 2, nothing written; returns stderr."""
    before = _tree(root)
    assert main([*argv, "--params", str(root / "params.yaml"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert _tree(root) == before
    return err


def _truncated() -> str:
    """The tiny params cut after their data section (a copy interrupted, a bad merge)."""
    full = yaml.safe_dump(tiny_params(), sort_keys=False)
    return full[: full.index("preprocess:")]


# ---------------------------------------------------------------------------- item 5
@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"], ids=["empty", "blank", "comment"])
@pytest.mark.parametrize("command", COMMANDS)
def test_an_empty_params_file_is_refused_naming_the_sections(tmp_path, monkeypatch, capsys, command, text):
    monkeypatch.chdir(tmp_path)
    path = _project(tmp_path, text)
    err = _refused(tmp_path, [command, "--image", "img"], capsys)
    assert str(path) in err and "is empty" in err, err
    assert all(name in err for name in COMMANDS[command]), err
    assert "{}" in err  # says how to ask for the defaults


@pytest.mark.parametrize("command", COMMANDS)
def test_a_truncated_params_file_is_refused_naming_the_missing_sections(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    path = _project(tmp_path, _truncated())
    err = _refused(tmp_path, [command, "--image", "img"], capsys)
    missing = [name for name in COMMANDS[command] if name != "data"]
    assert str(path) in err and f"has no {', '.join(missing)} section" in err, err


def test_an_override_does_not_stand_in_for_a_missing_section(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path, _truncated())
    err = _refused(tmp_path, ["train", "--image", "img", "--set", "train.steps=2"], capsys)
    assert "has no model, diffusion, train sections" in err, err


def test_defaults_stay_possible_when_asked_for(tmp_path):
    """``{}`` (all defaults) or ``section: {}`` / ``section:`` (that section's defaults) pass."""
    path = write_params_file(tmp_path / "params.yaml", "{}\n")
    for command in COMMANDS:
        config.check_written(load_params(path), command)
    write_params_file(path, _truncated() + "preprocess: {}\nmodel:\ndiffusion: {}\ntrain: {}\nsample: {}\n")
    for command in COMMANDS:
        config.check_written(load_params(path), command)


def test_the_library_still_reads_an_empty_file_as_defaults(tmp_path):
    """Only the pipeline commands insist on their sections; :func:`load_params` is unchanged."""
    params = load_params(write_params_file(tmp_path / "params.yaml", ""))
    assert params.section("train").steps > 0
    with pytest.raises(ConfigError, match="is empty"):
        config.check_written(params, "train")


def test_commands_that_read_optional_sections_are_not_affected(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path, "")
    assert main(["images", "--params", str(tmp_path / "params.yaml")]) == 0, capsys.readouterr().err


# ---------------------------------------------------------------------------- item 7
def _bomb(levels: int = 9) -> str:
    """Billion laughs: 9 levels of 9 aliases = 9**9 (387 million) strings from 400 bytes."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "manipulate:\n  edits:\n    " + "\n    ".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _project(tmp_path, _bomb())
    start = time.monotonic()
    err = _refused(tmp_path, ["images"], capsys)
    assert time.monotonic() - start < 5
    assert str(path) in err and "alias" in err, err


def test_a_few_aliases_are_still_fine(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    text = "sample: &s {steps: 5, seed: 1}\nmanipulate:\n  <<: *s\n  steps: 7\n"
    path = _project(tmp_path, text)
    assert main(["images", "--params", str(path)]) == 0, capsys.readouterr().err
    assert load_params(path).section("manipulate").steps == 7


@pytest.mark.parametrize(
    "text,key,line",
    [
        ("train:\n  steps: 5\n  lr: 0.1\n  steps: 7\n", "train.steps", 4),
        ("train:\n  steps: 5\nsample: {}\ntrain:\n  steps: 7\n", "train", 4),
        ("sample: {seed: 1, seed: 2}\n", "sample.seed", 1),
    ],
    ids=["key", "section", "flow"],
)
def test_a_repeated_key_is_refused_naming_file_key_and_line(tmp_path, monkeypatch, capsys, text, key, line):
    monkeypatch.chdir(tmp_path)
    path = _project(tmp_path, text)
    err = _refused(tmp_path, ["images"], capsys)
    assert str(path) in err and repr(key) in err and f"line {line}" in err and "repeated" in err, err


def test_a_repeated_key_in_an_override_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path, "{}\n")
    err = _refused(
        tmp_path, ["images", "--set", "model.channel_mult=[1, 2]", "--set", "tracking.x={a: 1, a: 2}"], capsys
    )
    assert "--set" in err and "'a'" in err and "repeated" in err, err


def test_a_huge_params_file_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _project(tmp_path, "# " + "x" * (5 << 20) + "\n")
    err = _refused(tmp_path, ["images"], capsys)
    assert str(path) in err and "too large" in err, err
