"""``sample.finish: nearest`` (applications/nearest_finish.py): the sharp last step, on tiny seeded images."""

from __future__ import annotations

import torch

from sindiffusion.applications.nearest_finish import (
    NearestPatchFinish,
    coherent_sources,
    gaussian_blur,
    nearest_patch_finish,
)
from sindiffusion.applications.patch_votes import padded_patches
from sindiffusion.evaluation.structure import sharpness


def _texture(seed: int = 0, h: int = 32, w: int = 40) -> torch.Tensor:
    """``[1, 3, h, w]`` in [-1, 1]: a sky band over a fine random texture (grass)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.empty(1, 3, h, w)
    img[:, :, : h // 3] = torch.tensor([-0.5, 0.0, 0.8])[None, :, None, None]
    grass = torch.tensor([-0.3, 0.3, -0.5])[None, :, None, None] + 0.4 * torch.rand(1, 1, h - h // 3, w, generator=g)
    img[:, :, h // 3 :] = grass
    return img.clamp(-1, 1)


def test_a_blurred_copy_comes_back_sharp_and_closer_to_the_image():
    img = _texture()
    blurred = gaussian_blur(img, 1.2)
    out = nearest_patch_finish(blurred, img)

    def sharp(x):
        return sharpness((img[0] + 1) / 2, (x + 1) / 2)

    assert sharp(blurred) < 0.6
    assert sharp(out) > 0.85
    assert (out - img).abs().mean() < (blurred - img).abs().mean()


def test_the_result_stays_within_the_image_colours_and_keeps_the_size():
    img = _texture(1)
    x = torch.rand(2, 3, 20, 56, generator=torch.Generator().manual_seed(3)) * 2 - 1  # another size, noise
    out = nearest_patch_finish(x, img)
    assert out.shape == (2, 3, 20, 56)
    for c in range(3):
        assert out[:, c].min() >= img[:, c].min() - 1e-5 and out[:, c].max() <= img[:, c].max() + 1e-5


def test_the_pca_shortlist_agrees_with_the_exact_search():
    """On structured content (no near-ties between noise patches) the shortlist, and the default
    strided search refined around its candidates, find the exact winner."""
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
    img = torch.stack([torch.sin(xx / 3), torch.cos(yy / 4), torch.sin((xx + yy) / 5)])[None] * 0.8
    x = gaussian_blur(img[..., 4:28, 6:38], 1.0)
    exact = nearest_patch_finish(x, img, dims=0, key_stride=1)
    for fast in (
        nearest_patch_finish(x, img, dims=8, top_k=16, key_stride=1),
        nearest_patch_finish(x, img),
        nearest_patch_finish(x, img, cells=16, probes=8),  # shortlisted within k-means cells
    ):
        assert (fast - exact).abs().mean() < 0.005


def test_the_hook_finishes_the_loop_output():
    img = _texture()
    x = gaussian_blur(img, 1.2).expand(2, -1, -1, -1)
    out = NearestPatchFinish(img, blur=1.5, window=0.5).finish(x, None)
    assert torch.equal(out, nearest_patch_finish(x, img, blur=1.5, window=0.5))


def _nearest_field(x: torch.Tensor, img: torch.Tensor):
    """Exact nearest blurred-key patch of every pixel of ``x`` and what :func:`coherent_sources` needs."""
    keys = padded_patches(gaussian_blur(img, 1.5), 7)[0]
    queries = padded_patches(x, 7).reshape(-1, keys.shape[1])
    dist = torch.cdist(queries.double(), keys.double()) ** 2  # [BHW, N]
    best = dist.argmin(1).view(x.shape[0], *x.shape[-2:])
    return best, queries, keys, dist


def _coherent_pairs(src: torch.Tensor, width: int) -> float:
    """Share of horizontal neighbour pairs copied from horizontal neighbours of the image."""
    r, c = src // width, src % width
    return ((r[..., 1:] == r[..., :-1]) & (c[..., 1:] == c[..., :-1] + 1)).double().mean().item()


def _energy(src: torch.Tensor, dist: torch.Tensor, width: int, lam: float) -> float:
    """The objective :func:`coherent_sources` lowers: match distances + lam x incoherent neighbour pairs."""
    d = dist.gather(1, src.reshape(-1, 1)).sum().item()
    r, c = src // width, src % width
    bad_x = ~((r[..., 1:] == r[..., :-1]) & (c[..., 1:] == c[..., :-1] + 1))
    bad_y = ~((r[:, 1:] == r[:, :-1] + 1) & (c[:, 1:] == c[:, :-1]))
    return d + 2 * lam * (bad_x.sum().item() + bad_y.sum().item())  # each pair counted from both pixels


def test_coherence_joins_the_sources_of_a_noisy_shifted_copy_and_lowers_its_energy():
    """A soft, noisy copy of part of the image: alone, each pixel's nearest patch comes from all over
    the grass; with coherence most pixels copy from the one place the copy came from."""
    img = _texture(2)
    g = torch.Generator().manual_seed(5)
    x = gaussian_blur(img[..., 6:30, 4:36], 1.2) + 0.08 * torch.randn(1, 3, 24, 32, generator=g)
    best, queries, keys, dist = _nearest_field(x, img)
    w = img.shape[-1]
    keys_sq = (keys**2).sum(1)
    lam = 0.5 * dist.min(1).values.mean().item()
    src = coherent_sources(best, queries, keys, keys_sq, tuple(img.shape[-2:]), 0.5)
    assert src.shape == best.shape and src.dtype == torch.long
    assert _coherent_pairs(src, w) > _coherent_pairs(best, w) + 0.2
    assert _energy(src, dist, w, lam) < _energy(best, dist, w, lam)
    shift = (src // w - torch.arange(24)[:, None] == 6) & (src % w - torch.arange(32)[None, :] == 4)
    true_shift_before = (best // w - torch.arange(24)[:, None] == 6) & (best % w - torch.arange(32)[None, :] == 4)
    assert shift.double().mean() > true_shift_before.double().mean()
    # a weight near zero only breaks exact ties: the nearest field stays
    tiny = coherent_sources(best, queries, keys, keys_sq, tuple(img.shape[-2:]), 1e-9)
    assert dist.gather(1, tiny.reshape(-1, 1)).sum() <= dist.gather(1, best.reshape(-1, 1)).sum() + 1e-6


def test_with_coherence_a_wider_vote_stays_sharp():
    """Why ``finish_coherence`` exists: without it a vote wider than half a pixel averages unrelated
    neighbours' patches into a blur; with it neighbouring votes agree, so the result stays crisp."""
    img = _texture(3)
    g = torch.Generator().manual_seed(7)
    x = gaussian_blur(torch.roll(img, 9, dims=-1), 1.2) + 0.05 * torch.randn(2, 3, 32, 40, generator=g)

    def sharp(y):
        return sharpness((img[0] + 1) / 2, (y + 1) / 2)

    plain = nearest_patch_finish(x, img, window=1.0)
    coherent = nearest_patch_finish(x, img, window=1.0, coherence=0.5)
    assert sharp(coherent) > sharp(plain) + 0.05
    target = torch.roll(img, 9, dims=-1).expand(2, -1, -1, -1)
    assert (coherent - target).abs().mean() < (plain - target).abs().mean()
    assert torch.equal(nearest_patch_finish(x, img, coherence=0.0), nearest_patch_finish(x, img))
