"""CLIP text guidance (SinDiffusion eq. 5).

Both networks here are RANDOM: the CLIP model is a tiny open_clip architecture registered
for the tests (embed_dim 32, one vision and one text layer, 32x32 input) with random weights,
and the UNet is random too. The tests check the mechanics -- the gradient flows back to x_t,
guidance changes the sample, scale 0 is exactly unguided sampling, a fixed seed reproduces
the output, errors are clear -- not that the images match the text.
"""

from __future__ import annotations

import open_clip
import pytest
import torch

from sindiffusion.applications import (
    CLIPGuidanceHook,
    CLIPNormalize,
    MissingCLIPWeightsError,
    clip_score,
    encode_text,
    load_clip,
    make_cutouts,
)
from sindiffusion.diffusion import SamplingContext, make_sampler, sample_loop


@pytest.fixture(scope="module")
def clip(tiny_clip_name):
    torch.manual_seed(0)
    model, normalize, tokenizer = load_clip(tiny_clip_name, None)
    text = encode_text(model, tokenizer, "a photo of a red mountain")
    return model, normalize, tokenizer, text


def test_load_clip_and_encode_text(clip):
    model, normalize, tokenizer, text = clip
    assert isinstance(normalize, CLIPNormalize) and normalize.image_size == (32, 32)
    assert text.shape == (1, 32) and torch.allclose(text.norm(dim=-1), torch.ones(1))
    assert not any(p.requires_grad for p in model.parameters())
    assert encode_text(model, tokenizer, ["a", "b"]).shape == (2, 32)
    for empty in ("", "   ", []):
        with pytest.raises(ValueError, match="prompt is empty"):
            encode_text(model, tokenizer, empty)


def test_guidance_gradient_is_nonzero(clip, unet, diffusion):
    model, normalize, _, text = clip
    hook = CLIPGuidanceHook(model, text, scale=100.0, cutouts=4)
    sampler = make_sampler("ddim", diffusion, 8)
    ctx = SamplingContext(diffusion, sampler, torch.Generator().manual_seed(0), torch.device("cpu"), (2, 3, 32, 32))
    x_t = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)).mul(0.5).requires_grad_(True)
    t = sampler.timesteps[-2]  # moderately noisy (143)
    out = diffusion.p_output(unet, x_t, t, sampler.prev_timestep(t))
    grad = hook.guidance(x_t, t, out, ctx)
    assert grad is not None and grad.shape == x_t.shape
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
    assert hook.last_similarity is not None and hook.last_similarity.shape == (2,)
    # Without the graph the hook explains what is wrong.
    with torch.no_grad():
        out_nograd = diffusion.p_output(unet, x_t.detach(), t, sampler.prev_timestep(t))
    with pytest.raises(RuntimeError, match="needs_grad"):
        hook.guidance(x_t.detach(), t, out_nograd, ctx)


def test_guidance_uses_the_unclipped_x0_at_noisy_steps(clip, unet, diffusion):
    """At t = T-1 the clipped pred_x0 saturates almost everywhere; the raw one still carries a gradient."""
    model, _, _, text = clip
    hook = CLIPGuidanceHook(model, text, scale=1.0, cutouts=2)
    sampler = make_sampler("ddim", diffusion, 8)
    ctx = SamplingContext(diffusion, sampler, torch.Generator().manual_seed(0), torch.device("cpu"), (1, 3, 32, 32))
    x_t = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    t = sampler.timesteps[0]
    out = diffusion.p_output(unet, x_t, t, sampler.prev_timestep(t), clip_x0=True)
    saturated = (out.pred_x0.detach().abs() >= 1.0).float().mean()
    assert saturated > 0.9  # the clamp would zero >90 % of the gradient
    grad = hook.guidance(x_t, t, out, ctx)
    assert (grad != 0).float().mean() > 0.9


@pytest.mark.parametrize("sampler_name,clip_x0", [("ddpm", True), ("ddim", True)])
def test_guidance_changes_output_and_is_deterministic(clip, unet, diffusion, sampler_name, clip_x0):
    model, _, _, text = clip
    sampler = make_sampler(sampler_name, diffusion, 6)

    def run(scale: float, hooks: bool = True) -> torch.Tensor:
        hook = CLIPGuidanceHook(model, text, scale=scale, cutouts=3)
        return sample_loop(
            unet,
            diffusion,
            sampler,
            (1, 3, 32, 32),
            hooks=[hook] if hooks else [],
            generator=torch.Generator().manual_seed(42),
            clip_x0=clip_x0,
        )

    unguided, zero, guided, again = run(0.0, hooks=False), run(0.0), run(2000.0), run(2000.0)
    assert torch.equal(zero, unguided)  # scale 0 is exactly plain sampling
    assert torch.equal(guided, again)  # fixed seed -> identical output (cutouts included)
    assert (guided - zero).abs().max() > 1e-3


def test_guidance_raises_clip_score(clip, unet, diffusion):
    """Strong guidance increases the (random) CLIP similarity the hook optimises."""
    model, normalize, _, text = clip
    sampler = make_sampler("ddim", diffusion, 6)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = sample_loop(unet, diffusion, sampler, (2, 3, 32, 32), generator=g())
    hook = CLIPGuidanceHook(model, text, scale=5000.0, cutouts=1, augment=False)
    guided = sample_loop(unet, diffusion, sampler, (2, 3, 32, 32), hooks=[hook], generator=g())
    s_plain, s_guided = clip_score(model, plain, text, normalize), clip_score(model, guided, text)
    assert s_plain.shape == (2,) and bool(((s_plain >= -1) & (s_plain <= 1)).all())
    assert float(s_guided.mean()) > float(s_plain.mean())


def test_cutouts_shapes_and_seed():
    images = torch.rand(2, 3, 40, 48) * 2 - 1
    a = make_cutouts(images, 5, (32, 32), torch.Generator().manual_seed(0))
    b = make_cutouts(images, 5, (32, 32), torch.Generator().manual_seed(0))
    assert a.shape == (10, 3, 32, 32) and torch.equal(a, b)


def test_hook_argument_errors(clip):
    model, _, _, text = clip
    with pytest.raises(ValueError, match="empty"):
        CLIPGuidanceHook(model, torch.empty(0, 32), scale=1.0)
    with pytest.raises(ValueError, match="cutouts"):
        CLIPGuidanceHook(model, text, scale=1.0, cutouts=0)


def test_missing_weights_errors(tmp_path, monkeypatch):
    missing = tmp_path / "clip.safetensors"
    with pytest.raises(MissingCLIPWeightsError, match="no such file") as info:
        load_clip("ViT-B-32", str(missing))
    assert "ViT-B-32" in str(info.value) and str(missing) in str(info.value)
    with pytest.raises(MissingCLIPWeightsError, match="not a known tag"):
        load_clip("ViT-B-32", "no-such-tag")

    # A known tag while offline: simulate the failed download (no network is touched).
    def offline(*args, **kwargs):
        raise OSError("offline: HF_HUB_OFFLINE=1 and the file is not in the cache")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(MissingCLIPWeightsError, match="run once with internet") as info:
        load_clip("ViT-B-32", "openai", cache_dir=tmp_path)
    assert "'openai'" in str(info.value) and "local path" in str(info.value)
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_clip("not-a-model", None)


def test_load_clip_from_local_file(clip, tiny_clip_name, tmp_path):
    """A local checkpoint path is accepted as ``pretrained`` (here: the random tiny model's weights)."""
    model = clip[0]
    path = tmp_path / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    loaded, _, _ = load_clip(tiny_clip_name, str(path))
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
