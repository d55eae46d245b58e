"""Validation of params.yaml's ``manipulate`` section (no model involved)."""

from __future__ import annotations

import pytest

from sindiffusion.applications.config import (
    EDIT_KINDS,
    ManipulateConfig,
    ManipulateError,
    edit_input_files,
    kind_options,
    parse_edit,
    parse_image_edits,
    validate_all_edits,
)
from sindiffusion.config import ConfigError, build_section

ORIGIN = "params.yaml: manipulate.edits.img[0]"

VALID = {kind: cls.EXAMPLE for kind, cls in EDIT_KINDS.kinds.items()}


@pytest.mark.parametrize("kind", EDIT_KINDS.names())
def test_every_kind_parses_with_defaults(kind):
    spec = parse_edit({"name": "x", "kind": kind, **VALID[kind]}, ORIGIN)
    assert spec.kind == kind and spec.name == "x"
    assert set(spec.options) >= set(kind_options(EDIT_KINDS.kinds[kind]))
    assert spec.where("mask") == f"{ORIGIN}.mask"


@pytest.mark.parametrize(
    "raw,key,match",
    [
        ({"kind": "text", "prompt": "a"}, "name", "required"),
        ({"name": "x"}, "kind", "required"),
        ({"name": "x", "kind": "outpant", "right": 2}, "kind", "did you mean 'outpaint'"),
        ({"name": "x", "kind": "outpaint", "rigth": 2}, "rigth", "did you mean 'right'"),
        ({"name": "x", "kind": "outpaint", "prompt": "a"}, "prompt", "unknown key; known keys: name, kind"),
        ({"name": "x", "kind": "text"}, "prompt", "required"),
        ({"name": "x", "kind": "text", "prompt": "   "}, "prompt", "prompt is empty"),
        ({"name": "x", "kind": "inpaint"}, "mask", "required"),
        ({"name": "x", "kind": "paint"}, "input", "required"),
        ({"name": "x", "kind": "harmonize", "input": "c.png"}, "mask", "required"),
        ({"name": "x", "kind": "super_resolution"}, "scale", "required"),
        ({"name": "x", "kind": "super_resolution", "scale": 1}, "scale", "must be >= 2, got 1"),
        ({"name": "x", "kind": "super_resolution", "scale": 1.5}, "scale", "expected an integer"),
        ({"name": "x", "kind": "paint", "input": "p.png", "strength": 1.5}, "strength", r"must be <= 1, got 1.5"),
        ({"name": "x", "kind": "paint", "input": "p.png", "factor": 0}, "factor", ">= 1"),
        ({"name": "x", "kind": "outpaint"}, "right", "left/right/top/bottom"),
        ({"name": "x", "kind": "outpaint", "right": 4, "width": 99}, "height", "not both"),
        ({"name": "x", "kind": "outpaint", "right": -4}, "right", ">= 0"),
        (
            {"name": "x", "kind": "outpaint", "width": 99, "anchor": "middle"},
            "anchor",
            "'middle' is not allowed; choose one of center, top",
        ),
        ({"name": "x", "kind": "resize"}, "width", "height/width"),
        ({"name": "x", "kind": "resize", "width": 4}, "width", ">= 8"),
        ({"name": "x", "kind": "resize", "width": 64, "strength": 0.5}, "strength", "only used with factor"),
        (
            {"name": "x", "kind": "resize", "width": 64, "sampler": "euler"},
            "sampler",
            "'euler' is not allowed; choose one of ddim, ddpm, euler_ancestral",
        ),
        ({"name": "../x", "kind": "resize", "width": 64}, "name", "'../x' is not allowed"),
        ({"name": "x", "kind": "inpaint", "mask": ""}, "mask", "empty"),
    ],
)
def test_errors_name_the_key(raw, key, match):
    with pytest.raises(ManipulateError, match=match) as info:
        parse_edit(raw, ORIGIN)
    assert str(info.value).startswith(f"{ORIGIN}.{key}:")


def test_cli_origin_names_the_flag():
    with pytest.raises(ManipulateError, match=r"^--guidance-scale: must be >= 0"):
        parse_edit({"name": "t", "prompt": "a", "guidance_scale": -1.0}, "--", "text")


def test_image_lists_and_duplicates():
    cfg = ManipulateConfig(
        edits={"img": [{"name": "a", "kind": "outpaint", "right": 4}, {"name": "a", "kind": "resize", "width": 64}]}
    )
    with pytest.raises(ManipulateError, match=r"manipulate.edits.img\[1\].name: duplicate edit name 'a'"):
        parse_image_edits(cfg, "img")
    assert parse_image_edits(ManipulateConfig(), "img") == []
    with pytest.raises(ManipulateError, match=r"manipulate.edits.img: expected a list"):
        parse_image_edits(ManipulateConfig(edits={"img": {"name": "a"}}), "img")
    # Every image is checked at once: a typo in another image's edits is reported too.
    cfg = ManipulateConfig(edits={"a": [], "b": [{"name": "x", "kind": "resize"}]})
    with pytest.raises(ManipulateError, match=r"manipulate.edits.b\[0\].width"):
        validate_all_edits(cfg)


def test_section_types_are_checked():
    with pytest.raises(ConfigError, match=r"params.yaml: manipulate.steps: expected an integer"):
        build_section(ManipulateConfig, {"steps": "many"}, "params.yaml: manipulate")
    with pytest.raises(ConfigError, match=r"manipulate.edits: expected a mapping"):
        build_section(ManipulateConfig, {"edits": [1]}, "params.yaml: manipulate")


def test_edit_input_files_for_workflows():
    section = {
        "edits": {
            "img": [
                {"name": "a", "kind": "harmonize", "input": "c.png", "mask": "m.png"},
                {"name": "b", "kind": "inpaint", "mask": "m.png"},
                "junk",
            ],
            "other": [{"name": "c", "kind": "paint", "input": "p.png"}],
        }
    }
    assert edit_input_files(section, "img") == ["c.png", "m.png"]
    assert edit_input_files(section, "none") == [] and edit_input_files(None, "img") == []
