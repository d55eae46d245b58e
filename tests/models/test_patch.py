"""The closed-form patch denoiser (model kind ``patch``): exact math on tiny seeded cases."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from sindiffusion.diffusion.gaussian import GaussianDiffusion
from sindiffusion.diffusion.loop import sample_loop
from sindiffusion.diffusion.samplers import build_sampler
from sindiffusion.models.patch import PatchConfig, PatchDenoiser, posterior_mean_patches
from sindiffusion.validation import FieldError

DIFF = GaussianDiffusion.from_config("linear", 100, 1e-4, 0.02)


def _image(h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    """A smooth-ish tiny image ``[3, h, w]`` in [-1, 1]: gradients plus seeded noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    base = torch.stack([yy, xx, yy * xx])
    return (0.7 * base + 0.3 * torch.rand(3, h, w, generator=g) * 2 - 0.3).clamp(-1, 1)


def _brute_force(x_t: torch.Tensor, image: torch.Tensor, p: int, abar: float) -> torch.Tensor:
    """Centre-pixel posterior mean written out literally: for every pixel, every training patch."""
    pad = p // 2
    xp = F.pad(x_t, (pad,) * 4)
    ip = F.pad(image[None], (pad,) * 4)
    _, _, h, w = x_t.shape
    train = [ip[0, :, i : i + p, j : j + p] for i in range(image.shape[1]) for j in range(image.shape[2])]
    train = torch.stack(train).double()  # [N, 3, p, p]
    out = torch.zeros_like(x_t, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            q = xp[0, :, i : i + p, j : j + p].double()
            d2 = ((q[None] - abar**0.5 * train) ** 2).flatten(1).sum(1)
            wts = torch.softmax(-d2 / (2 * (1 - abar)), 0)
            out[0, :, i, j] = (wts[:, None] * train[:, :, pad, pad]).sum(0)
    return out.float()


@pytest.mark.parametrize("t", [5, 40, 90])
def test_single_scale_centre_equals_brute_force(t):
    image = _image(10, 12)
    cfg = PatchConfig(patch_size=3, scales=1, aggregate="center", chunk_size=7, padding="zero")
    model = PatchDenoiser(cfg, image, DIFF.alphas_cumprod)
    x_t = DIFF.q_sample(
        image[None], torch.tensor([t]), torch.randn(1, 3, 10, 12, generator=torch.Generator().manual_seed(t))
    )
    got = model.denoise(x_t, t)
    want = _brute_force(x_t, image, 3, float(DIFF.alphas_cumprod[t]))
    assert torch.allclose(got, want, atol=1e-4)


def test_posterior_mean_is_the_softmax_formula_and_chunking_does_not_matter():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(50, 6, generator=g), torch.randn(70, 6, generator=g), torch.randn(70, 4, generator=g)
    for sqrt_abar, var in [(0.3, 0.91), (0.99, 0.02), (0.99995, 1e-4)]:
        want = torch.softmax(-((q[:, None] - sqrt_abar * k[None]) ** 2).sum(-1) / (2 * var), 1) @ v
        full = posterior_mean_patches(q, k, (k**2).sum(1), v, sqrt_abar, var, chunk_size=1000)
        chunked = posterior_mean_patches(q, k, (k**2).sum(1), v, sqrt_abar, var, chunk_size=7)
        assert torch.allclose(full, want, atol=1e-4)
        assert torch.allclose(full, chunked, atol=1e-5, rtol=1e-5)  # BLAS blocking differs, math does not


def _top_k_reference(q, k, v, sqrt_abar, var, top_k, pick=None):
    """Truncated softmax written out: per query, the top_k patches by ``pick`` logits (default: the
    exact ones), weighted by a softmax of their exact logits."""
    exact = -((q[:, None] - sqrt_abar * k[None]) ** 2).sum(-1) / (2 * var)  # [M, N]
    idx = (exact if pick is None else pick).topk(top_k, dim=1).indices
    return (torch.softmax(exact.gather(1, idx), 1)[..., None] * v[idx]).sum(1)


def test_top_k_is_the_softmax_over_the_k_nearest_patches():
    g = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(40, 6, generator=g), torch.randn(90, 6, generator=g), torch.randn(90, 4, generator=g)
    for sqrt_abar, var in [(0.3, 0.91), (0.99, 0.02)]:
        want = _top_k_reference(q, k, v, sqrt_abar, var, 5)
        got = posterior_mean_patches(q, k, (k**2).sum(1), v, sqrt_abar, var, chunk_size=7, top_k=5)
        assert torch.allclose(got, want, atol=1e-5)
        full = posterior_mean_patches(q, k, (k**2).sum(1), v, sqrt_abar, var, chunk_size=7)
        # a flat posterior (high noise) is really truncated; a concentrated one (low noise) is not
        assert torch.allclose(got, full, atol=1e-3) == (var < 0.1)
    # k >= N is the exact softmax
    exact = posterior_mean_patches(q, k, (k**2).sum(1), v, 0.3, 0.91, chunk_size=7)
    assert torch.allclose(posterior_mean_patches(q, k, (k**2).sum(1), v, 0.3, 0.91, 7, top_k=90), exact)


def test_top_k_with_a_shortlist_reranks_with_exact_distances():
    """The shortlist picks the candidates (here: the first 2 coordinates), the weights are exact."""
    g = torch.Generator().manual_seed(4)
    q, k, v = torch.randn(30, 6, generator=g), torch.randn(80, 6, generator=g), torch.randn(80, 4, generator=g)
    sqrt_abar, var = 0.9, 0.19
    qs, ks = q[:, :2], k[:, :2]
    pick = -((qs[:, None] - sqrt_abar * ks[None]) ** 2).sum(-1)
    want = _top_k_reference(q, k, v, sqrt_abar, var, 8, pick=pick)
    got = posterior_mean_patches(
        qs, ks, (ks**2).sum(1), v, sqrt_abar, var, chunk_size=9, top_k=8, rerank=(q, k, (k**2).sum(1))
    )
    assert torch.allclose(got, want, atol=1e-5)


def test_top_k_denoiser_returns_the_training_image_at_low_noise_and_converges_to_the_exact_one():
    image = _image()
    exact = PatchDenoiser(PatchConfig(patch_size=5, scales=1), image, DIFF.alphas_cumprod)
    x_t = DIFF.q_sample(
        image[None], torch.tensor([30]), torch.randn(1, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    )
    want = exact.denoise(x_t, 30)

    def top(k: int, pca_dims: int = 0) -> PatchDenoiser:
        cfg = PatchConfig(patch_size=5, scales=1, top_k=k, pca_dims=pca_dims)
        return PatchDenoiser(cfg, image, DIFF.alphas_cumprod)

    assert torch.allclose(top(1).denoise(image[None], 0), image[None], atol=1e-4)
    errs = [(top(k).denoise(x_t, 30) - want).abs().mean().item() for k in (1, 8, 32, 128)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.02  # the exact one minus 0.18 to the image
    # a shortlist in 74 of the 75 dimensions picks (almost) the same k, reranked exactly
    assert (top(8, pca_dims=74).denoise(x_t, 30) - top(8).denoise(x_t, 30)).abs().mean() < 0.01
    # a 12-dimensional shortlist still lands near the exact top-k
    assert (top(32, pca_dims=12).denoise(x_t, 30) - want).abs().mean() < 0.06


@pytest.mark.parametrize("aggregate", ["center", "window"])
@pytest.mark.parametrize("padding", ["zero", "reflect"])
def test_clean_training_image_is_returned_at_low_noise(aggregate, padding):
    """At abar -> 1 the posterior collapses on the nearest patch: the training image comes back."""
    image = _image()
    model = PatchDenoiser(PatchConfig(patch_size=5, aggregate=aggregate, padding=padding), image, DIFF.alphas_cumprod)
    assert len(model.train_sizes) >= 2  # the multi-scale path is exercised
    assert torch.allclose(model.denoise(image[None], 0), image[None], atol=1e-4)
    eps = model(image[None], torch.zeros(1, dtype=torch.long))
    assert eps.shape == (1, 3, 24, 32) and torch.isfinite(eps).all()


def _border_sky(h: int = 12, w: int = 16) -> torch.Tensor:
    """``[3, h, w]``: a flat dark "sky" in the top 4 rows only (fewer than a 7 px patch), a bright
    textured "ground" below: no 7x7 patch of the image is all sky; with padding, the sky's border
    patches are the only all-sky ones."""
    g = torch.Generator().manual_seed(3)
    image = 0.5 + 0.3 * torch.rand(3, h, w, generator=g)
    image[:, :4] = -0.9
    return image


@pytest.mark.parametrize("padding, ok", [("zero", False), ("reflect", True), ("both", True), ("auto", True)])
def test_enlarged_sample_finds_border_only_content_away_from_the_border(padding, ok):
    """A sample larger than the training image puts the sky (a border-only region of the training
    image) in its interior too. With zero padding every sky patch carries a zero (grey) margin,
    so an interior all-sky query has no match and comes back greyed; border content must also be
    offered without that margin (reflect, or both dictionaries)."""
    image = _border_sky()
    cfg = PatchConfig(patch_size=7, scales=1, padding=padding)
    model = PatchDenoiser(cfg, image, DIFF.alphas_cumprod)
    x = torch.full((1, 3, 24, 32), -0.9)  # a big sky: its interior queries see sky on every side
    x[:, :, 16:] = image[:, 4:12, :].repeat(1, 1, 2)[None]  # ground below it
    got = model.denoise(x, 2)[0, :, 6:10, 8:24]  # the sky's interior, 6+ px from every border
    err = (got + 0.9).abs().max().item()
    assert (err < 0.05) == ok, f"{padding}: the interior sky is off by {err:.3f}"


def test_both_paddings_keep_the_border_dictionary_at_the_training_size():
    """``both`` adds the reflect-padded border patches to the zero-padded ones: a border query
    (zero margin) still prefers the zero-padded patch, so the training image comes back at t = 0
    and its border stays its border."""
    image = _image()
    both = PatchDenoiser(PatchConfig(patch_size=5, padding="both"), image, DIFF.alphas_cumprod)
    zero = PatchDenoiser(PatchConfig(patch_size=5, padding="zero"), image, DIFF.alphas_cumprod)
    assert torch.allclose(both.denoise(image[None], 0), image[None], atol=1e-4)
    n_zero = [s.patches.shape[0] for s in zero.build_index()]
    n_both = [s.patches.shape[0] for s in both.build_index()]
    for (h, w), nz, nb in zip(both.train_sizes, n_zero, n_both):
        border = h * w - max(0, h - 4) * max(0, w - 4)  # positions within 2 px (p // 2) of a border
        assert (nz, nb) == (h * w, h * w + border)


@pytest.mark.parametrize("shortlist", [{}, {"top_k": 8, "pca_dims": 12}])
def test_auto_padding_is_zero_at_the_training_size_and_both_when_larger(shortlist):
    image = _image()
    models = {
        pad: PatchDenoiser(PatchConfig(patch_size=5, padding=pad, **shortlist), image, DIFF.alphas_cumprod)
        for pad in ("zero", "both", "auto")
    }
    g = torch.Generator().manual_seed(4)
    for size, same_as in (((24, 32), "zero"), ((20, 30), "zero"), ((24, 40), "both"), ((30, 32), "both")):
        x_t = torch.randn(1, 3, *size, generator=g)
        got = models["auto"].denoise(x_t, 40)
        assert torch.equal(got, models[same_as].denoise(x_t, 40)), (size, same_as)
        other = "both" if same_as == "zero" else "zero"
        assert not torch.equal(got, models[other].denoise(x_t, 40)), (size, other)


def test_memory_estimate_counts_the_extra_border_patches():
    image = _image()
    est = {
        pad: PatchDenoiser(PatchConfig(patch_size=5, scales=1, padding=pad), image, DIFF.alphas_cumprod).logits_bytes()
        for pad in ("zero", "both", "auto")
    }
    border = 24 * 32 - 20 * 28  # positions within 2 px of a border
    assert est["both"] == est["auto"] == est["zero"] + 1024 * border * 4


def test_denoising_error_shrinks_with_noise_level():
    image = _image()
    model = PatchDenoiser(PatchConfig(patch_size=5), image, DIFF.alphas_cumprod)
    g = torch.Generator().manual_seed(1)
    errs = []
    for t in (90, 50, 10):
        x_t = DIFF.q_sample(image[None], torch.tensor([t]), torch.randn(1, 3, 24, 32, generator=g))
        errs.append((model.denoise(x_t, t) - image).abs().mean().item())
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.05


def test_pca_and_key_stride_approximate_the_exact_denoiser():
    image = _image()
    exact = PatchDenoiser(PatchConfig(patch_size=5, scales=1), image, DIFF.alphas_cumprod)
    pca = PatchDenoiser(PatchConfig(patch_size=5, scales=1, pca_dims=24), image, DIFF.alphas_cumprod)
    x_t = DIFF.q_sample(
        image[None], torch.tensor([30]), torch.randn(1, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    )
    a, b = exact.denoise(x_t, 30), pca.denoise(x_t, 30)
    assert (a - b).abs().mean() < 0.05
    for padding, border in (("zero", 0), ("both", 2 * 16 + 2 * 12 - 4)):  # stride-2 positions within 2 px of a border
        cfg = PatchConfig(patch_size=5, scales=1, key_stride=2, padding=padding)
        strided = PatchDenoiser(cfg, image, DIFF.alphas_cumprod)
        assert strided.build_index()[0].patches.shape[0] == 12 * 16 + border


def test_batch_with_mixed_timesteps_matches_one_by_one():
    image = _image()
    model = PatchDenoiser(PatchConfig(patch_size=5), image, DIFF.alphas_cumprod)
    x = torch.randn(2, 3, 24, 32, generator=torch.Generator().manual_seed(3))
    both = model(x, torch.tensor([10, 60]))
    assert torch.allclose(both[:1], model(x[:1], torch.tensor([10])), atol=1e-6)
    assert torch.allclose(both[1:], model(x[1:], torch.tensor([60])), atol=1e-6)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_samples_are_deterministic_per_seed_any_size(sampler):
    image = _image()
    model = PatchDenoiser(PatchConfig(patch_size=5), image, DIFF.alphas_cumprod)
    smp = build_sampler(SimpleNamespace(sampler=sampler, steps=5, eta=0.0), DIFF)

    def draw(seed: int, size=(24, 48)) -> torch.Tensor:
        return sample_loop(
            model, DIFF, smp, (2, 3, *size), generator=torch.Generator().manual_seed(seed), clip_x0=False
        )

    a, b, c = draw(0), draw(0), draw(1)
    assert a.shape == (2, 3, 24, 48) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"patch_size": 4}, "patch_size"),
        ({"scale_ratio": 1.0}, "scale_ratio"),
        ({"fold_size": 9}, "fold_size"),
        ({"fine_start": 2.0}, "fine_start"),
        ({"key_stride": 0}, "key_stride"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"pca_dims": -1}, "pca_dims"),
        ({"top_k": -1}, "top_k"),
        ({"patch_sizes": (5, 5), "scales": 3}, "patch_sizes"),
    ],
)
def test_bad_options_name_the_key(kwargs, key):
    with pytest.raises(FieldError) as err:
        PatchConfig(**kwargs)
    assert err.value.key == key


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"query_stride": 9}, "model.query_stride: must be <= 8, got 9"),
        ({"patch_sizes": (5, 65)}, "model.patch_sizes[1]: must be <= 63, got 65"),
        ({"padding": "circular"}, "model.padding: 'circular' is not allowed; choose one of zero, reflect, both, auto"),
    ],
)
def test_declared_rules_are_checked_when_built_directly(kwargs, message):
    """The opt(...) declarations are the one statement of each key's range (e.g. a checkpoint's stored options)."""
    with pytest.raises(FieldError, match=re.escape(message)):
        PatchConfig(**kwargs)


def test_patch_larger_than_coarsest_scale_is_refused():
    with pytest.raises(ValueError, match=r"model\.patch_size: patch side 7 is larger than scale 2"):
        PatchDenoiser(PatchConfig(patch_size=7, scales=3), _image(), DIFF.alphas_cumprod)


def test_chunk_that_would_not_fit_memory_is_refused():
    model = PatchDenoiser(PatchConfig(patch_size=3, scales=1, chunk_size=1 << 20), _image(), DIFF.alphas_cumprod)
    with pytest.raises(ValueError, match=r"model\.chunk_size"):
        model.check_memory(available_bytes=1 << 20)
