"""Contract tests run for every registered application (a new kind module is checked here automatically)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sindiffusion import cli
from sindiffusion.applications.base import APPLICATIONS, Application, applications, kinds_keys_doc, kinds_table
from sindiffusion.applications.config import EDIT_KINDS, EditOptions, parse_edit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "applications.md"


@pytest.fixture(params=APPLICATIONS.names())
def app(request) -> type[Application]:
    return APPLICATIONS.get(request.param)


class TestApplicationContract:
    def test_describes_itself(self, app):
        assert app.name and app.help and app.hooks_doc and issubclass(app.Options, EditOptions)
        assert dataclasses.is_dataclass(app.Options) and EDIT_KINDS.kinds[app.name] is app.Options

    def test_its_example_parses_with_defaults(self, app):
        spec = parse_edit({"name": "x", "kind": app.name, **app.Options.EXAMPLE}, "params.yaml: manipulate.edits.i[0]")
        assert spec.kind == app.name and set(spec.options) == {f.name for f in dataclasses.fields(app.Options)} - {
            "name",
            "kind",
        }

    def test_has_a_one_off_command_with_a_flag_per_option(self, app):
        cli._load_extensions()
        sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
        parser = sub.choices[app.command()]
        flags = {o for a in parser._actions for o in a.option_strings}
        keys = {f.name for f in dataclasses.fields(app.Options)} - {"kind"}
        assert {"--" + k.replace("_", "-") for k in keys} <= flags

    def test_is_in_the_docs_table(self, app):
        assert f"| `{app.name}` | `sindiffusion {app.command()}` |" in DOCS.read_text()


def test_commands_are_unique_and_the_docs_table_is_generated():
    commands = [a.command() for a in applications()]
    assert len(set(commands)) == len(commands) >= 9
    assert kinds_table() in DOCS.read_text() and kinds_keys_doc() in DOCS.read_text()
