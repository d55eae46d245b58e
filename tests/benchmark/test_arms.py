"""Arm specs and image selections of the benchmark: parsing and the errors a user sees."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sindiffusion.benchmark import arms
from sindiffusion.benchmark.arms import Arm, check_arms, parse_arm, select_images
from sindiffusion.config import ConfigError
from tests.tiny import write_image


def test_parse_arm_with_overrides_keeps_commas_inside_values():
    arm = parse_arm("patch=configs/patch.yaml:train.steps=3,model.channel_mult=[1, 2],sample.steps=4")
    assert arm == Arm(
        "patch", Path("configs/patch.yaml"), ("train.steps=3", "model.channel_mult=[1, 2]", "sample.steps=4")
    )
    assert parse_arm(arm.spec()) == arm
    assert parse_arm("unet=params.yaml") == Arm("unet", Path("params.yaml"))


@pytest.mark.parametrize(
    "text, words",
    [
        ("params.yaml", "NAME=PARAMS_FILE"),
        ("unet=", "NAME=PARAMS_FILE"),
        ("a b=params.yaml", "'a b'"),
        ("singan=params.yaml", "reserved"),
        ("u=params.yaml:steps", "not section.key=value"),
    ],
)
def test_bad_arm_names_the_problem(text, words):
    with pytest.raises(ConfigError, match=words):
        parse_arm(text)


def test_duplicate_arm_names():
    with pytest.raises(ConfigError, match="repeated: u"):
        check_arms([parse_arm("u=a.yaml"), parse_arm("u=b.yaml")])


def test_select_images_ranges_lists_and_limit(tmp_path):
    for n in ("10", "2", "1", "3", "b", "a"):
        write_image(tmp_path / f"{n}.png", (16, 16), seed=0, texture="noise")
    assert select_images(tmp_path) == ["1", "2", "3", "10", "a", "b"]
    assert select_images(tmp_path, limit=2) == ["1", "2"]
    assert select_images(tmp_path, "2-10") == ["2", "3", "10"]
    assert select_images(tmp_path, "10,1,a,1-2") == ["1", "2", "10", "a"]
    for bad, words in (("1-2,7", "'7' is not an image"), ("4-9", "numbered 4-9"), ("3-1", "start > end")):
        with pytest.raises(ValueError, match=words):
            select_images(tmp_path, bad)
    with pytest.raises(FileNotFoundError, match="no image files"):
        select_images(tmp_path / "none")


@dataclasses.dataclass(frozen=True)
class _Old:
    kind: str = "unet"
    steps: int = 100
    lr: float = 1e-3


@dataclasses.dataclass(frozen=True)
class _New(_Old):  # the same section one version later: a new option whose default keeps the old behaviour
    warmup: int = 0


class _Params:
    """Just what the fingerprint reads: ``section(name)`` -> a dataclass."""

    def __init__(self, **sections) -> None:
        self.sections = sections

    def section(self, name: str):
        return self.sections[name]


def test_fingerprint_ignores_options_at_their_default_so_old_results_stay_reusable():
    old = _Params(train=_Old(steps=700))
    assert arms.changed_settings(old, ["train"]) == {"train": {"kind": "unet", "steps": 700}}
    assert arms.fingerprint(_Params(train=_New(steps=700)), ["train"]) == arms.fingerprint(old, ["train"])
    assert arms.fingerprint(_Params(train=_New(steps=700, warmup=5)), ["train"]) != arms.fingerprint(old, ["train"])
    assert arms.fingerprint(_Params(train=_Old(steps=701)), ["train"]) != arms.fingerprint(old, ["train"])
    # the kind is always part of it: two kinds at their defaults are different models
    patch, unet = _Params(train=_Old(kind="patch")), _Params(train=_Old())
    assert arms.fingerprint(patch, ["train"]) != arms.fingerprint(unet, ["train"])


def test_sizes_parse_into_scale_pairs_and_name_one_arm_per_size():
    from sindiffusion.benchmark.arms import Arm, parse_sizes, with_sizes

    sizes = parse_sizes("1x1, 1x1.5,1x2,2x1")
    assert sizes == [(1.0, 1.0), (1.0, 1.5), (1.0, 2.0), (2.0, 1.0)]
    arms = with_sizes([Arm("patch", Path("configs/patch.yaml"), ("sample.init=native",))], sizes[1:3])
    assert [a.name for a in arms] == ["patch@1x1.5", "patch@1x2"]
    assert arms[1].overrides == (
        "sample.init=native",
        "sample.scale_h=1",
        "sample.scale_w=2",
        "sample.height=null",
        "sample.width=null",
    )


@pytest.mark.parametrize("text", ["2", "1x0", "0x1", "1x2,1x2", "1x17", "ax1", "1x-1"])
def test_a_bad_size_list_names_the_item(text):
    from sindiffusion.benchmark.arms import parse_sizes

    with pytest.raises(ConfigError, match="--sizes"):
        parse_sizes(text)
