"""Checkpoints: atomic writes, weights_only loading, format checks, model round trip."""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path

import pytest
import torch

from sindiffusion import checkpoint as ckpt_mod
from sindiffusion.artifacts import sha256_file
from sindiffusion.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    diffusion_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from sindiffusion.models.unet import UNet
from tests.tiny import (
    TINY_UNET,
    one_torch_thread,  # noqa: F401
)

TINY = TINY_UNET
DIFFUSION = {"schedule": "linear", "timesteps": 100, "beta_start": 1e-4, "beta_end": 0.02, "variance": "fixed_large"}


def _state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = UNet(TINY)
    with torch.no_grad():
        for p in model.parameters():  # the output conv is zero-initialised: make every weight matter
            p.add_(torch.randn_like(p) * 0.05)
    ema = {k: v.clone() * 0.5 for k, v in model.state_dict().items()}
    return {
        "step": 7,
        "config": {"model": TINY.to_dict(), "diffusion": dict(DIFFUSION), "train": {"lr": 1e-3}},
        "image": {"name": "img", "sha256": "0" * 64, "size": [40, 48], "path": "x.png"},
        "model": model.state_dict(),
        "ema": ema,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]},
        "rng": {"torch": torch.get_rng_state()},
    }


def test_roundtrip_self_describing(tmp_path):
    path = save_checkpoint(tmp_path / "sub" / "model.pt", _state())
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == FORMAT and ckpt["version"] == VERSION and ckpt["step"] == 7
    assert ckpt["config"]["model"] == TINY.to_dict() and ckpt["image"]["size"] == [40, 48]
    assert len(sha256_file(path)) == 64


@pytest.mark.parametrize("use_ema", [True, False])
def test_model_from_checkpoint_gives_identical_outputs(tmp_path, use_ema):
    state = _state()
    reference = UNet(TINY)
    reference.load_state_dict(state["ema"] if use_ema else state["model"])
    reference.eval()
    model = model_from_checkpoint(load_checkpoint(save_checkpoint(tmp_path / "m.pt", state)), use_ema=use_ema)
    assert not model.training and model.config == TINY
    x, t = torch.randn(2, 3, 12, 20), torch.tensor([3, 90])
    with torch.no_grad():
        expected, got = reference(x, t), model(x, t)
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    other = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"), use_ema=not use_ema)
    with torch.no_grad():
        assert not torch.allclose(other(x, t), expected)


def test_diffusion_from_checkpoint(tmp_path):
    diff = diffusion_from_checkpoint(load_checkpoint(save_checkpoint(tmp_path / "m.pt", _state())))
    assert diff.num_timesteps == 100


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    save_checkpoint(target, _state(0))
    before = target.read_bytes()

    def failing_save(obj, f, *args, **kwargs):  # f: a path or (as save_checkpoint passes) a file
        with open(f, "wb") if isinstance(f, (str, Path)) else contextlib.nullcontext(f) as fh:
            fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(target, _state(1))
    assert target.read_bytes() == before  # the previous checkpoint is intact
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "new.pt", _state(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no partial file, no temp left
    monkeypatch.undo()
    load_checkpoint(target)


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    real_save = torch.save

    def interrupted(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "model.pt", _state())
    assert list(tmp_path.iterdir()) == []


_CALLED: list[str] = []


def _side_effect(tag: str) -> str:
    _CALLED.append(tag)
    return tag


class _Evil:
    def __reduce__(self):
        return (_side_effect, ("unpickled",))


def test_load_refuses_non_allowlisted_objects(tmp_path):
    state = _state()
    state["extra"] = _Evil()
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, **state}, path)
    _CALLED.clear()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert _CALLED == []  # nothing was executed while loading
    torch.load(path, weights_only=False)  # sanity: the object really is a callable reduce
    assert _CALLED == ["unpickled"]


def test_load_uses_weights_only(tmp_path, monkeypatch):
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    path = save_checkpoint(tmp_path / "m.pt", _state())
    monkeypatch.setattr(ckpt_mod.torch, "load", spy)
    load_checkpoint(path)
    assert seen.get("weights_only") is True


@pytest.mark.parametrize(
    "payload,expected",
    [
        ({"format": "something-else", "version": VERSION}, "not a sindiffusion checkpoint"),
        ({"version": VERSION}, "not a sindiffusion checkpoint"),
        ([1, 2, 3], "not a sindiffusion checkpoint"),
        ({"format": FORMAT, "version": VERSION + 1}, f"version {VERSION + 1} is not supported"),
        ({"format": FORMAT, "version": VERSION, "step": 1}, "has no 'config' entry"),
    ],
)
def test_wrong_format_or_version(tmp_path, payload, expected):
    path = tmp_path / "bad.pt"
    if isinstance(payload, dict) and payload.get("format") == FORMAT and "step" not in payload:
        payload = {**_state(), **payload}
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_missing_corrupt_and_truncated(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"text\.pt: not a readable checkpoint"):
        load_checkpoint(text)
    good = save_checkpoint(tmp_path / "good.pt", _state()).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable checkpoint"):
        load_checkpoint(cut)
    old_pickle = tmp_path / "pickle.pt"
    old_pickle.write_bytes(pickle.dumps({"format": FORMAT}, protocol=2))
    with pytest.raises(CheckpointError, match=r"pickle\.pt"):
        load_checkpoint(old_pickle)
