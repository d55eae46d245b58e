"""Contract tests run for every registered application (a new kind module is checked here automatically)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from sindiffusion import cli
from sindiffusion.applications.base import APPLICATIONS, Application, applications, kinds_keys_doc, kinds_table
from sindiffusion.applications.config import EDIT_KINDS, EditOptions, ManipulateConfig, parse_edit
from sindiffusion.applications.manipulate import prepare_edit, run_edit, write_edit
from sindiffusion.applications.text import load_clip
from sindiffusion.data.io import save_image
from sindiffusion.generate import load_bundle
from tests.tiny import smooth_image

DOCS = Path(__file__).resolve().parents[2] / "docs" / "applications.md"


@pytest.fixture(params=APPLICATIONS.names())
def app(request) -> type[Application]:
    return APPLICATIONS.get(request.param)


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint):
    """The tiny checkpoint (a 32x32 training image) loaded for sampling on the CPU."""
    return load_bundle(tiny_checkpoint, torch.device("cpu"))


def example_edit(app: type[Application], folder: Path, size: tuple[int, int]) -> dict:
    """The kind's EXAMPLE edit with its file names made real: masks (key ``mask``) white on the right
    half, other images smooth; both at ``size`` = (H, W), the training image's."""
    raw = {"name": "x", "kind": app.name, **app.Options.EXAMPLE}
    for seed, (key, value) in enumerate(app.Options.EXAMPLE.items(), 1):
        if isinstance(value, str) and value.endswith(".png"):
            image = smooth_image(seed, *size)[0]
            if key == "mask":
                image = torch.full_like(image, -1.0)
                image[..., size[1] // 2 :] = 1.0
            save_image(image, folder / value)
            raw[key] = str(folder / value)
    return raw


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

    def test_runs_one_sampling_with_the_tiny_model(self, app, bundle, tiny_clip_name, tmp_path):
        """Its EXAMPLE edit, prepared, sampled (3 DDIM steps, 2 samples) and written like `manipulate` does."""
        size = bundle.train_size
        spec = parse_edit(example_edit(app, tmp_path, size), "params.yaml: manipulate.edits.img[0]")
        cfg = ManipulateConfig(steps=3, num=2, batch_size=2, device="cpu", clip_model=tiny_clip_name)
        clip_cache = {(tiny_clip_name, cfg.clip_pretrained): load_clip(tiny_clip_name, None)}  # random, tiny CLIP
        train_image = smooth_image(0, *size)
        prep = prepare_edit(spec, cfg, bundle, train_image, None, clip_cache)
        result = run_edit(prep, bundle)
        assert result.samples.shape == (2, 3, *prep.size) and bool(torch.isfinite(result.samples).all())
        assert float(result.samples.abs().max()) <= 1.0
        assert all(math.isfinite(v) for v in result.metrics.values())
        meta = write_edit(tmp_path / "out", prep, result)
        assert json.loads((tmp_path / "out" / "edit.json").read_text())["kind"] == app.name == meta["kind"]
        assert all((tmp_path / "out" / f).is_file() for f in meta["files"])

    def test_is_in_the_docs_table(self, app):
        assert f"| `{app.name}` | `sindiffusion {app.command()}` |" in DOCS.read_text()


def test_commands_are_unique_and_the_docs_table_is_generated():
    commands = [a.command() for a in applications()]
    assert len(set(commands)) == len(commands) >= 9
    assert kinds_table() in DOCS.read_text() and kinds_keys_doc() in DOCS.read_text()
