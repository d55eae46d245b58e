"""params.yaml: typed sections, clear errors, --set overrides, the shipped configurations."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import pytest
import yaml

from sindiffusion import config as config_mod
from sindiffusion.config import (
    SECTIONS,
    STAGE_SECTIONS,
    ConfigError,
    TrainConfig,
    build_section,
    load_params,
    parse_override,
)
from sindiffusion.models.unet import PRESETS, UNet, UNetConfig, count_parameters
from tests.tiny import write_params_file

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path, data, name="params.yaml") -> Path:
    return write_params_file(tmp_path / name, data)


# ------------------------------------------------------------------ errors
def test_unknown_key_names_file_key_and_close_match(tmp_path):
    path = _write(tmp_path, {"train": {"stpes": 10}})
    with pytest.raises(ConfigError) as info:
        load_params(path)
    msg = str(info.value)
    assert str(path) in msg and "train.stpes" in msg and "unknown key" in msg and "'steps'" in msg


def test_unknown_key_without_close_match_lists_known_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"sample\.zzzzzz: unknown key; known keys: sampler, steps, eta"):
        load_params(_write(tmp_path, {"sample": {"zzzzzz": 1}}))


@pytest.mark.parametrize(
    "section,key,value,expected",
    [
        ("train", "steps", "ten", "expected an integer"),
        ("train", "steps", 1.5, "expected an integer"),
        ("train", "steps", True, "expected an integer"),
        ("train", "lr", "fast", "expected a number"),
        ("train", "lr", [1], "expected a number"),
        ("train", "ema_warmup", "yes please", "expected true/false"),
        ("train", "ema_warmup", 1, "expected true/false"),
        ("sample", "sampler", 3, "expected a string"),
        ("model", "channel_mult", 4, "expected a list"),
        ("model", "channel_mult", [1, "two"], "expected an integer"),
        ("data", "images", "img", "expected a list"),
    ],
)
def test_wrong_types(tmp_path, section, key, value, expected):
    path = _write(tmp_path, {section: {key: value}})
    with pytest.raises(ConfigError) as info:
        load_params(path).section(section)
    msg = str(info.value)
    assert str(path) in msg and f"{section}.{key}" in msg and expected in msg


def test_a_number_where_a_name_belongs_says_to_quote_it(tmp_path):
    """YAML reads `images: [1, 2]` (Places50's file names) as integers: the error says how to write names."""
    path = _write(tmp_path, {"data": {"images": [1, 2]}})
    with pytest.raises(ConfigError) as info:
        load_params(path).section("data")
    msg = str(info.value)
    assert str(path) in msg and "data.images[0]: expected a string, got int 1" in msg
    assert "quote it" in msg and "'1'" in msg


def test_types_are_coerced(tmp_path):
    params = load_params(
        _write(
            tmp_path,
            {"train": {"lr": 1, "steps": 5}, "model": {"channel_mult": [1, 2]}, "data": {"images": ["a", "b"]}},
        )
    )
    train = params.section("train")
    assert isinstance(train.lr, float) and train.lr == 1.0 and train.steps == 5
    assert params.section("model").channel_mult == (1, 2)
    assert params.section("data").images == ("a", "b")
    assert params.section("train").batch_size == TrainConfig().batch_size  # defaults fill the rest


def test_section_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match=r"train: expected a mapping"):
        load_params(_write(tmp_path, {"train": [1, 2]})).section("train")


def test_unknown_section_in_file(tmp_path):
    path = _write(tmp_path, {"trian": {"steps": 1}})
    with pytest.raises(ConfigError) as info:
        load_params(path)
    msg = str(info.value)
    assert str(path) in msg and "unknown section 'trian'" in msg and "'train'" in msg


def test_unknown_section_requested(tmp_path):
    with pytest.raises(ConfigError, match="unknown section 'nope'"):
        load_params(_write(tmp_path, {})).section("nope")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", "params file"),  # handled below: missing file
        ("train: [unclosed\n", "invalid YAML"),
        ("- a\n- b\n", "expected a mapping of sections"),
    ],
)
def test_file_errors(tmp_path, text, expected):
    if text:
        path = _write(tmp_path, text)
        with pytest.raises(ConfigError, match=expected):
            load_params(path)
    else:
        with pytest.raises(ConfigError, match="params file not found"):
            load_params(tmp_path / "nope.yaml")


def test_empty_file_is_all_defaults(tmp_path):
    params = load_params(_write(tmp_path, ""))
    assert params.section("train") == TrainConfig()


# ------------------------------------------------------------------ overrides
@pytest.mark.parametrize(
    "text,keys,value",
    [
        ("train.lr=1e-4", ["train", "lr"], 1e-4),
        ("train.lr=5E-4", ["train", "lr"], 5e-4),
        ("train.lr=0.5", ["train", "lr"], 0.5),
        ("train.steps=100", ["train", "steps"], 100),
        ("train.ema_warmup=true", ["train", "ema_warmup"], True),
        ("train.crop_size=null", ["train", "crop_size"], None),
        ("sample.sampler=ddim", ["sample", "sampler"], "ddim"),
        ("model.channel_mult=[1, 2, 4, 8]", ["model", "channel_mult"], [1, 2, 4, 8]),
        ("tracking.tracking_uri=http://host:5000", ["tracking", "tracking_uri"], "http://host:5000"),
        ("data.images=[a, b]", ["data", "images"], ["a", "b"]),
        ("a.b.c=x=y", ["a", "b", "c"], "x=y"),
    ],
)
def test_parse_override(text, keys, value):
    got_keys, got = parse_override(text)
    assert got_keys == keys
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", ["train.lr", "lr=1", ".lr=1", "train.=1", "train.lr=[1,"])
def test_parse_override_errors(text):
    with pytest.raises(ConfigError, match="--set"):
        parse_override(text)


def test_overrides_apply_and_win(tmp_path):
    path = _write(tmp_path, {"train": {"lr": 0.1, "steps": 3}})
    params = load_params(path, ["train.lr=1e-4", "train.steps=7", "sample.height=37", "model.channel_mult=[1,2]"])
    assert params.section("train").lr == pytest.approx(1e-4) and params.section("train").steps == 7
    assert params.section("sample").height == 37
    assert params.section("model").channel_mult == (1, 2)
    # the file itself is untouched
    assert yaml.safe_load(path.read_text()) == {"train": {"lr": 0.1, "steps": 3}}


def test_override_unknown_section_and_key(tmp_path):
    path = _write(tmp_path, {})
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        load_params(path, ["trian.steps=1"])
    with pytest.raises(ConfigError, match=r"train\.stepz: unknown key \(did you mean 'steps'\?\)"):
        load_params(path, ["train.stepz=1"]).section("train")
    with pytest.raises(ConfigError, match=r"train\.steps: expected an integer"):
        load_params(path, ["train.steps=many"]).section("train")


@dataclasses.dataclass(frozen=True)
class _NestedSection:
    options: dict = dataclasses.field(default_factory=dict)
    name: Optional[str] = None


def test_nested_override_into_mapping(tmp_path, monkeypatch):
    monkeypatch.setitem(SECTIONS, "extra", _NestedSection)
    path = _write(tmp_path, {"extra": {"options": {"keep": 1, "inner": {"a": 1}}}, "train": None})
    params = load_params(path, ["extra.options.inner.b=2e-3", "extra.options.new.deep=[1, 2]", "extra.name=x"])
    section = params.section("extra")
    assert section.options == {"keep": 1, "inner": {"a": 1, "b": 0.002}, "new": {"deep": [1, 2]}}
    assert section.name == "x"
    # an empty section written as `train:` (None) still takes overrides
    assert load_params(path, ["train.steps=3"]).section("train").steps == 3


def test_nested_override_into_a_scalar_is_a_config_error(tmp_path):
    path = _write(tmp_path, {"train": {"lr": 0.1}})
    with pytest.raises(ConfigError, match=r"--set 'train.lr.x=1'"):
        load_params(path, ["train.lr.x=1"])


# ------------------------------------------------------------------ the shipped configurations
@pytest.mark.parametrize("name", ["params.yaml", "configs/paper.yaml", "configs/gpu-fast.yaml"])
def test_shipped_configs_validate(name):
    path = REPO / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this checkout")
    # sections registered by subsystems (evaluation, applications) are added when their CLI loads
    from sindiffusion import cli

    cli._load_extensions()
    params = load_params(path)
    assert set(params.raw) <= set(SECTIONS)
    for section in params.raw:
        params.section(section)
    for stage in STAGE_SECTIONS:
        params.stage(stage)
    unet = params.section("model").unet()
    assert params.section("preprocess").max_size >= 4 * unet.size_multiple


def test_paper_config_is_the_paper():
    path = REPO / "configs" / "paper.yaml"
    if not path.is_file():
        pytest.skip("configs/paper.yaml is not in this checkout")
    params = load_params(path)
    assert params.section("model").unet() == PRESETS["paper"]
    assert params.section("preprocess").max_size == 250
    d, t = params.section("diffusion"), params.section("train")
    assert (d.timesteps, d.schedule, d.beta_start, d.beta_end) == (1000, "linear", 1e-4, 0.02)
    assert (t.scale_min, t.scale_max, t.ema_decay, t.batch_size) == (0.75, 1.25, 0.9999, 16)


# ------------------------------------------------------------------ model presets
def test_paper_preset_parameter_count(tmp_path):
    unet = load_params(_write(tmp_path, {"model": {"preset": "paper"}})).section("model").unet()
    assert unet == UNetConfig() and unet.channel_mult == (1, 2, 4) and unet.groups == 32
    assert count_parameters(UNet(unet)) == 6_992_899


def test_enhanced_preset(tmp_path):
    unet = load_params(_write(tmp_path, {"model": {"preset": "enhanced"}})).section("model").unet()
    assert [unet.base_channels * m for m in unet.channel_mult] == [64, 128, 256, 512]
    assert (unet.encoder_blocks, unet.decoder_blocks, unet.size_multiple) == (2, 3, 8)
    assert count_parameters(UNet(unet)) > count_parameters(UNet(PRESETS["paper"]))


def test_preset_with_overrides_and_custom(tmp_path):
    params = load_params(_write(tmp_path, {"model": {"preset": "paper", "base_channels": 32, "groups": 8}}))
    unet = params.section("model").unet()
    assert (unet.base_channels, unet.groups, unet.channel_mult) == (32, 8, (1, 2, 4))
    custom = load_params(_write(tmp_path, {"model": {"preset": "custom", "channel_mult": [1, 2]}})).section("model")
    assert custom.unet().channel_mult == (1, 2) and custom.unet().base_channels == 64


def test_unknown_preset(tmp_path):
    with pytest.raises(
        ConfigError, match=r"model.preset: 'huge' is not allowed; choose one of paper, enhanced, custom"
    ):
        load_params(_write(tmp_path, {"model": {"preset": "huge"}})).section("model").unet()


@pytest.mark.parametrize(
    "model,expected",
    [
        ({"encoder_blocks": 2, "decoder_blocks": 2}, r"decoder_blocks \(2\) must be >= encoder_blocks \+ 1 \(3\)"),
        ({"encoder_blocks": 1, "decoder_blocks": 1}, r"decoder_blocks \(1\) must be >= encoder_blocks \+ 1 \(2\)"),
        ({"groups": 24}, r"model.groups \(24\) must divide"),
        ({"channel_mult": []}, r"model.channel_mult: \[\] is too short"),
        ({"dropout": 1.0}, r"model.dropout: must be < 1, got 1.0"),
    ],
)
def test_invalid_architecture_is_a_clear_config_error(tmp_path, model, expected):
    path = _write(tmp_path, {"model": {"preset": "paper", **model}})
    with pytest.raises(ConfigError, match=expected):
        load_params(path).section("model").unet()


def test_a_bad_value_in_any_section_fails_at_load_time(tmp_path):
    """Every section is checked when the file is loaded, not when a stage first reads it."""
    path = _write(tmp_path, {"sample": {"steps": 5}, "train": {"stpes": 1}})
    with pytest.raises(ConfigError, match=r"train\.stpes: unknown key"):
        load_params(path)
    params = load_params(_write(tmp_path, {"sample": {"steps": 5}}))
    assert set(params.stage("sample")) == set(STAGE_SECTIONS["sample"]) and params.section("sample").steps == 5


def test_kinded_model_section(tmp_path):
    """model.kind picks the options dataclass; unknown kinds name the key and the kinds."""
    assert load_params(_write(tmp_path, {"model": {"kind": "unet", "preset": "paper"}})).section("model").kind == "unet"
    assert load_params(_write(tmp_path, {"model": None})).section("model").unet() == PRESETS["paper"]
    with pytest.raises(ConfigError, match=r"model\.kind: unknown model kind 'unte' \(did you mean 'unet'\?\)"):
        load_params(_write(tmp_path, {"model": {"kind": "unte"}}))


@pytest.mark.parametrize(
    "data,match",
    [
        ({"diffusion": {"beta_start": 0.03, "beta_end": 0.02}}, r"diffusion: diffusion.beta_start \(0.03\) must be <="),
        ({"diffusion": {"timesteps": 10}}, r"diffusion.beta_end 0.02 rescaled to diffusion.timesteps=10 is 2"),
        ({"train": {"scale_min": 2.0}}, r"train.scale_min \(2\) must be <= train.scale_max"),
    ],
)
def test_checks_across_keys_name_the_keys(tmp_path, data, match):
    with pytest.raises(ConfigError, match=match):
        load_params(_write(tmp_path, data))


def test_the_json_schema_is_generated_from_the_config():
    """workflow/schemas/params.schema.yaml is `python -m sindiffusion.config`'s output (regenerate it if this fails)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "sindiffusion.config"], capture_output=True, text=True, check=True)
    assert (REPO / "workflow" / "schemas" / "params.schema.yaml").read_text() == out.stdout
    schema = config_mod.json_schema()
    assert schema["properties"]["sample"]["properties"]["sampler"]["enum"] == list(config_mod.SAMPLERS.names())
    assert set(schema["properties"]) == set(SECTIONS)


def test_the_schema_accepts_and_refuses_what_the_config_does(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = config_mod.json_schema()
    for name in ("params.yaml", "configs/paper.yaml"):
        jsonschema.validate(yaml.safe_load((REPO / name).read_text()), schema)
    for bad in (
        {"data": {}, "train": {"precision": "fp16"}},
        {"data": {}, "model": {"kind": "nope"}},
        {"data": {}, "sample": {"steps": 0}},
        {"data": {}, "model": {"preset": "paper", "dropout": 1}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_sifid_layer_choices_are_the_evaluation_layers():
    from sindiffusion.evaluation.sifid import SIFID_LAYERS

    rule = config_mod.field_rules(config_mod.EvaluateConfig)["sifid_layers"]
    assert set(rule.item.choices) == set(SIFID_LAYERS)


def test_section_dict_is_plain(tmp_path):
    d = load_params(_write(tmp_path, {"model": {"channel_mult": [1, 2]}})).section_dict("model")
    assert d["channel_mult"] == [1, 2] and d["preset"] == "paper"
    yaml.safe_dump(d)  # plain types only


def test_build_section_where_prefix():
    with pytest.raises(ConfigError, match=r"^X: train\.steps: expected an integer"):
        build_section(config_mod.TrainConfig, {"steps": "a"}, "X: train")


# ------------------------------------------------------------------ recipe options (issue 10)
@pytest.mark.parametrize("value", [True, False, "dynamic", "low_noise"])
def test_clip_x0_modes_are_accepted(tmp_path, value):
    path = _write(tmp_path, {"sample": {"clip_x0": value}})
    assert load_params(path).section("sample").clip_x0 == value


@pytest.mark.parametrize(
    "section,key,value,expected",
    [
        (
            "sample",
            "clip_x0",
            "always",
            r"sample\.clip_x0: expected true/false, got str 'always'; allowed: true/false or dynamic or low_noise",
        ),
        ("sample", "clip_x0_percentile", 1.5, r"sample\.clip_x0_percentile: must be <= 1, got 1.5"),
        ("sample", "clip_x0_low_noise", 0, r"sample\.clip_x0_low_noise: must be > 0, got 0"),
        ("sample", "precision", "fp16", r"sample\.precision: 'fp16' is not allowed.*choose one of auto, fp32, bf16"),
        ("train", "precision", "fp16", r"train\.precision: 'fp16' is not allowed.*choose one of"),
        ("train", "loss_weighting", "snr", r"train\.loss_weighting: 'snr' is not allowed.*choose one of none, min_snr"),
        ("train", "min_snr_gamma", 0, r"train\.min_snr_gamma: must be > 0, got 0"),
        ("train", "lr_warmup", -1, r"train\.lr_warmup: must be >= 0, got -1"),
        (
            "train",
            "lr_schedule",
            "linear",
            r"train\.lr_schedule: 'linear' is not allowed; choose one of constant, cosine",
        ),
        (
            "train",
            "ema_decay",
            "fast",
            r"train\.ema_decay: expected a number, got str 'fast'; allowed: a number >= 0 and <= 1 or auto",
        ),
        ("train", "ema_decay", 1.5, r"train\.ema_decay: must be <= 1, got 1.5"),
        ("train", "ema_half_life", 0, r"train\.ema_half_life: must be > 0, got 0"),
        (
            "diffusion",
            "parameterization",
            "x0",
            r"diffusion\.parameterization: 'x0' is not allowed; choose one of eps, v",
        ),
        ("train", "max_minutes", 0, r"train\.max_minutes: must be > 0, got 0"),
        ("train", "snapshot_minutes", [1, -2], r"train\.snapshot_minutes\[1\]: must be > 0, got -2"),
        ("train", "snapshot_minutes", [1, 1], r"train\.snapshot_minutes: repeated values"),
        ("train", "snapshot_minutes", 5, r"train\.snapshot_minutes: expected a list"),
    ],
)
def test_recipe_options_are_checked_at_load_time(tmp_path, section, key, value, expected):
    path = _write(tmp_path, {section: {key: value}})
    with pytest.raises(ConfigError, match=rf"{path}: {expected}"):
        load_params(path).section(section)


def test_manipulate_clip_x0_is_checked(tmp_path):
    from sindiffusion import cli

    cli._load_extensions()
    path = _write(tmp_path, {"manipulate": {"clip_x0": "dynamic", "clip_x0_percentile": 0.9}})
    assert load_params(path).section("manipulate").clip_x0 == "dynamic"
    bad = _write(tmp_path, {"manipulate": {"clip_x0": "yes"}})
    with pytest.raises(ConfigError, match=r"manipulate\.clip_x0: expected true/false, got str .yes.; allowed"):
        load_params(bad).section("manipulate")


def test_sections_follow_edits_of_raw_after_loading(tmp_path):
    """The benchmark commands point data/train at their own folders after load_params."""
    params = load_params(_write(tmp_path, {"train": {"steps": 5}}))
    assert params.section("train").steps == 5 and params.section("data").results_dir == "results"
    params.raw["train"]["steps"] = 7
    params.raw["data"] = {"results_dir": "elsewhere"}
    assert params.section("train").steps == 7 and params.section("data").results_dir == "elsewhere"
    params.raw["train"]["max_minutes"] = -1
    with pytest.raises(ConfigError, match=r"train\.max_minutes"):
        params.section("train")


@pytest.mark.parametrize(
    "value,expected", [(0, "must be > 0, got 0"), (1.5, "must be <= 1, got 1.5"), ("all", "a number")]
)
def test_train_t_max_is_a_fraction_of_the_timesteps(tmp_path, value, expected):
    path = _write(tmp_path, {"train": {"t_max": value}})
    with pytest.raises(ConfigError, match=r"train\.t_max: .*" + expected):
        load_params(path)
    assert load_params(_write(tmp_path, {"train": {"t_max": 0.5}})).section("train").t_max == 0.5
