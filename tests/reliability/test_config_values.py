"""Every numeric option has a range and every choice its allowed set, checked when params are loaded.

The cases are derived from the config engine's metadata (:func:`sindiffusion.config.field_rules`), so a
new field is covered without touching this file; a minimum count keeps the derivation honest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sindiffusion import cli
from sindiffusion.applications.config import EDIT_KINDS
from sindiffusion.config import Rule, field_rules, section_variants
from tests.tiny import write_params_file

_WRONG_TYPE: dict[type, Any] = {bool: "maybe", int: "many", float: "fast", str: 12345, dict: [1, 2], tuple: 7}


def _bad_values(rule: Rule) -> list[Any]:
    """Values the rule must refuse: outside each bound, outside the choices, empty, or of the wrong type."""
    values: list[Any] = []
    if rule.choices is not None:
        values.append("no-such-choice")
    if rule.pattern is not None:
        values.append("../not a name")
    step = 1 if rule.type is int else 0.5
    if rule.ge is not None:
        values.append(rule.ge - step)
    if rule.gt is not None:
        values.append(rule.gt)
    if rule.le is not None:
        values.append(rule.le + step)
    if rule.lt is not None:
        values.append(rule.lt)
    if rule.min_len:
        values.append("" if rule.type is str else [])
    if rule.item is not None:
        values.extend([bad] for bad in _bad_values(rule.item))
    if rule.type is float:  # NaN passes every comparison, inf every lower bound (issue 28)
        values += [float("nan"), float("inf"), float("-inf")]
    if rule.type is int:  # beyond 64 bits: torch and numpy would wrap it (seed 2**64 = seed 0)
        values += [2**63, -(2**63) - 1]
    values.append(_WRONG_TYPE[rule.type])
    return values


# (section, base, key, value): the file holds {section: {**base, key: value}}; base picks a kind.
CASES = [
    pytest.param(section, base, name, value, id=f"{section}{base or ''}.{name}={value!r}")
    for section, base, cls in section_variants()
    for name, rule in field_rules(cls).items()
    for value in _bad_values(rule)
]

# Every option of every edit kind (applications), on a valid example of the kind.
EDIT_CASES = [
    pytest.param(kind, name, value, id=f"{kind}.{name}={value!r}")
    for kind, cls in EDIT_KINDS.kinds.items()
    for name, rule in field_rules(cls).items()
    for value in _bad_values(rule)
]


def test_the_cases_cover_every_field_of_every_section_and_edit_kind():
    fields = {(s, str(b), f.name) for s, b, cls in section_variants() for f in dataclasses.fields(cls)}
    assert {(p.values[0], str(p.values[1]), p.values[2]) for p in CASES} == fields
    assert len(fields) >= 70 and len(CASES) >= 140
    edit_fields = {(k, f.name) for k, cls in EDIT_KINDS.kinds.items() for f in dataclasses.fields(cls)}
    assert {(p.values[0], p.values[1]) for p in EDIT_CASES} == edit_fields
    assert len(EDIT_KINDS.kinds) >= 8 and len(EDIT_CASES) >= 200


def test_every_number_has_a_range():
    def numeric(rule: Rule) -> list[Rule]:
        return [rule] if rule.type in (int, float) else numeric(rule.item) if rule.item else []

    classes = [(s, cls) for s, _, cls in section_variants()] + list(EDIT_KINDS.kinds.items())
    unbounded = [
        f"{s}.{n}"
        for s, cls in classes
        for n, r in field_rules(cls).items()
        for x in numeric(r)
        if (x.ge, x.gt, x.le, x.lt) == (None, None, None, None)
    ]
    assert unbounded == []


def _run(tmp_path: Path, data: dict, overrides: list[str], capsys) -> tuple[int, str]:
    path = write_params_file(tmp_path / "params.yaml", data)
    argv = ["images", "--params", str(path)] + [a for o in overrides for a in ("--set", o)]
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


def _assert_named(err: str, path: str, key: str, value: Any) -> None:
    assert path in err and key in err, err
    shown = value[0] if isinstance(value, list) and value else value
    assert repr(shown) in err or str(shown) in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("section,base,key,value", CASES)
def test_bad_value_in_the_file_exits_2_naming_file_key_and_value(tmp_path, capsys, section, base, key, value):
    rc, err = _run(tmp_path, {section: {**base, key: value}}, [], capsys)
    assert rc == 2, err
    _assert_named(err, str(tmp_path / "params.yaml"), f"{section}.{key}", value)


@pytest.mark.parametrize("kind,key,value", EDIT_CASES)
def test_bad_edit_option_exits_2_naming_file_key_and_value(tmp_path, capsys, kind, key, value):
    edit = {"name": "e", "kind": kind, **EDIT_KINDS.kinds[kind].EXAMPLE, key: value}
    rc, err = _run(tmp_path, {"manipulate": {"edits": {"img": [edit]}}}, [], capsys)
    assert rc == 2, err
    _assert_named(err, str(tmp_path / "params.yaml"), f"manipulate.edits.img[0].{key}", value)


def test_every_edit_kind_example_is_valid(tmp_path, capsys):
    edits = [{"name": kind, "kind": kind, **cls.EXAMPLE} for kind, cls in EDIT_KINDS.kinds.items()]
    rc, err = _run(tmp_path, {"manipulate": {"edits": {"img": edits}}}, [], capsys)
    assert rc == 0, err


@pytest.mark.parametrize(
    "override,allowed",
    [
        ("train.precision=fp16", "bf16"),
        ("train.steps=0", ">= 1"),
        ("train.steps=-5", ">= 1"),
        ("train.batch_size=0", ">= 1"),
        ("train.save_every=0", ">= 1"),
        ("train.log_every=0", ">= 1"),
        ("sample.batch_size=0", ">= 1"),
        ("train.lr=-1", "> 0"),
        ("sample.sampler=foo", "ddim"),
        ("manipulate.sampler=foo", "ddpm"),
        ("model.preset=huge", "enhanced"),
    ],
)
def test_bad_override_exits_2_naming_key_value_and_what_is_allowed(tmp_path, capsys, override, allowed):
    rc, err = _run(tmp_path, {}, [override], capsys)
    key, value = override.split("=")
    assert rc == 2, err
    assert key in err and value in err and allowed in err, err


@pytest.mark.parametrize(
    "override,shown",
    [
        ("sample.eta=.nan", "nan"),
        ("sample.eta=.inf", "inf"),
        ("evaluate.copy_threshold=.nan", "nan"),
        ("train.lr=1e999", "inf"),
        ("sample.seed=18446744073709551616", "18446744073709551616"),
        ("train.seed=-1", "-1"),
        ("evaluate.swd_seed=9223372036854775808", "9223372036854775808"),
    ],
)
def test_nan_inf_and_out_of_range_seed_exit_2_naming_the_key(tmp_path, capsys, override, shown):
    rc, err = _run(tmp_path, {}, [override], capsys)
    assert rc == 2, err
    assert override.split("=")[0] in err and shown in err, err


def test_the_largest_seed_is_accepted(tmp_path, capsys):
    rc, err = _run(tmp_path, {}, [f"sample.seed={2**63 - 1}"], capsys)
    assert rc == 0, err


def test_the_shipped_configs_pass(capsys):
    root = Path(__file__).resolve().parents[2]
    for name in ("params.yaml", "configs/paper.yaml"):
        assert cli.main(["images", "--params", str(root / name)]) == 0, capsys.readouterr().err
