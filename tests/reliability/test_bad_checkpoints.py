"""A checkpoint that loads but is unusable is refused naming the file and the entry (issue 28, items 3
and 10): non-finite weights, a malformed config, missing weights, weights of the wrong shape; and the
refusal of pickled code never repeats torch's advice to load with ``weights_only=False``."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from sindiffusion.cli import main
from tests.tiny import one_torch_thread  # noqa: F401

CKPT = "results/img/train/model.pt"


def _nan_weights(ckpt: dict) -> None:
    name = next(k for k, v in ckpt["ema"].items() if v.is_floating_point())
    ckpt["ema"][name] = torch.full_like(ckpt["ema"][name], float("nan"))


def _string_config(ckpt: dict) -> None:
    ckpt["config"] = "not a config"


def _negative_timesteps(ckpt: dict) -> None:
    ckpt["config"]["diffusion"]["timesteps"] = -5


def _no_weights(ckpt: dict) -> None:
    ckpt["ema"] = {}


def _not_a_tensor(ckpt: dict) -> None:
    ckpt["model"][next(iter(ckpt["model"]))] = "weights"


def _wrong_shape(ckpt: dict) -> None:
    name = next(k for k, v in ckpt["ema"].items() if v.dim() == 4)
    ckpt["ema"][name] = torch.zeros(3, 3, 3, 3)


def _missing_weight(ckpt: dict) -> None:
    del ckpt["ema"][next(iter(ckpt["ema"]))]


def _string_model_config(ckpt: dict) -> None:
    ckpt["config"]["model"] = "unet"


def _bad_model_value(ckpt: dict) -> None:
    ckpt["config"]["model"]["base_channels"] = "eight"


def _no_schedule(ckpt: dict) -> None:
    del ckpt["config"]["diffusion"]["schedule"]


def _unknown_schedule(ckpt: dict) -> None:
    ckpt["config"]["diffusion"]["schedule"] = "nonsense"


def _string_image(ckpt: dict) -> None:
    ckpt["image"] = "img"


#: ``how the checkpoint is spoiled -> words the message must hold``
SPOILED = {
    "nan-weights": (_nan_weights, "NaN or infinite"),
    "string-config": (_string_config, "'config'"),
    "negative-timesteps": (_negative_timesteps, "config.diffusion.timesteps"),
    "no-weights": (_no_weights, "'ema'"),
    "not-a-tensor": (_not_a_tensor, "not a tensor"),
    "wrong-shape": (_wrong_shape, "size mismatch"),
    "missing-weight": (_missing_weight, "Missing key"),
    "string-model-config": (_string_model_config, "config.model"),
    "bad-model-value": (_bad_model_value, "config.model"),
    "no-schedule": (_no_schedule, "config.diffusion"),
    "unknown-schedule": (_unknown_schedule, "config.diffusion"),
    "string-image": (_string_image, "'image'"),
}


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("kind", SPOILED)
def test_a_spoiled_checkpoint_is_refused_naming_file_and_entry(trained_project, capsys, kind):
    spoil, words = SPOILED[kind]
    ckpt = torch.load(trained_project / CKPT, weights_only=True)
    spoil(ckpt)
    path = trained_project / f"spoiled-{kind}.pt"
    torch.save(ckpt, path)
    before = _tree(trained_project)
    rc = main(["sample", "--image", "img", "--checkpoint", str(path), "--num", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert str(path) in err and words in err and "Traceback" not in err, err
    assert _tree(trained_project) == before


class _Payload:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_the_refusal_of_pickled_code_does_not_advise_weights_only_false(trained_project, capsys):
    path = trained_project / "code.pt"
    path.write_bytes(pickle.dumps({"format": "sindiffusion-checkpoint", "x": _Payload()}))
    rc = main(["sample", "--image", "img", "--checkpoint", str(path), "--num", "1", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 2 and str(path) in captured.err, captured.err
    assert "weights_only" not in captured.err and "this ran" not in captured.out, captured.err


def test_a_resume_checkpoint_whose_weights_do_not_fit_is_named(trained_project, capsys):
    """The resume state matches the config but its weights do not: exit 2 naming the file and the fix."""
    resume = trained_project / "results/img/train/resume/latest.pt"
    ckpt = torch.load(resume, weights_only=True)
    _wrong_shape(ckpt)
    torch.save(ckpt, resume)
    rc = main(["train", "--image", "img", "--no-progress", "--set", "train.steps=6"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "results/img/train/resume/latest.pt" in err and "size mismatch" in err and "delete" in err, err
