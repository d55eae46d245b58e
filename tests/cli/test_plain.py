"""A stage with no hand-written command gets one from STAGE_SECTIONS (sindiffusion.cli.plain)."""

from __future__ import annotations

import argparse
import json
import sys
import types

import pytest

from sindiffusion import cli
from sindiffusion.cli import main, plain
from sindiffusion.cli.options import add_common
from sindiffusion.config import STAGE_SECTIONS
from tests.tiny import tiny_project


def _sheet_module(calls: list) -> types.ModuleType:
    """A stand-in for a new stage module ``sindiffusion.stages.sheet``."""
    module = types.ModuleType("sindiffusion.stages.sheet")
    module.__doc__ = "sheet: a contact sheet of the samples.\n\nMore text that is not the help."

    def run(params, image):
        calls.append((params.section("sample").num_samples, image))
        if image == "missing":
            raise ValueError("results/missing/samples: no sample_*.png; run `sindiffusion sample` first")
        return {"path": f"results/{image}/sheet/sheet.png"}

    module.run = run
    return module


@pytest.fixture
def sheet_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_project(tmp_path)
    calls: list = []
    monkeypatch.setitem(STAGE_SECTIONS, "sheet", ("sample",))
    monkeypatch.setitem(sys.modules, "sindiffusion.stages.sheet", _sheet_module(calls))
    return calls


def test_a_new_stage_is_a_command_without_a_cli_edit(sheet_stage, capsys):
    assert main(["sheet", "--image", "tiny", "--set", "sample.num_samples=3", "--no-progress"]) == 0
    assert sheet_stage == [(3, "tiny")]
    assert json.loads(capsys.readouterr().out) == {"path": "results/tiny/sheet/sheet.png"}


def test_its_help_is_the_first_docstring_line(sheet_stage):
    cli._load_extensions()
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert helps["sheet"] == "sheet: a contact sheet of the samples"


def test_its_bad_input_exits_2_naming_the_file(sheet_stage, capsys):
    assert main(["sheet", "--image", "missing"]) == 2
    assert "sindiffusion sheet: error: results/missing/samples: no sample_*.png" in capsys.readouterr().err


def test_hand_written_commands_win():
    cli._load_extensions()
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    sample = sub.choices["sample"].get_default("func")
    assert sample.__module__ == "sindiffusion.cli.stages" and sample.__name__ == "_sample"
    assert all(sub.choices[name].get_default("func").__module__ != plain.__name__ for name in STAGE_SECTIONS)


def test_a_stage_without_a_module_is_named(monkeypatch):
    monkeypatch.setitem(STAGE_SECTIONS, "nosuchstage", ())
    sub = argparse.ArgumentParser().add_subparsers()
    with pytest.raises(ImportError, match="stage 'nosuchstage'.*no module sindiffusion.stages.nosuchstage"):
        plain.register(sub, add_common)


def test_a_stage_module_without_run_is_named(monkeypatch):
    monkeypatch.setitem(STAGE_SECTIONS, "norun", ())
    monkeypatch.setitem(sys.modules, "sindiffusion.stages.norun", types.ModuleType("sindiffusion.stages.norun"))
    sub = argparse.ArgumentParser().add_subparsers()
    with pytest.raises(ImportError, match=r"sindiffusion.stages.norun: a stage module needs run\(params, image\)"):
        plain.register(sub, add_common)
