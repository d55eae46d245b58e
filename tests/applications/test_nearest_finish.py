"""``sample.finish: nearest`` (applications/nearest_finish.py): the sharp last step, on tiny seeded images."""

from __future__ import annotations

import torch

from sindiffusion.applications.nearest_finish import NearestPatchFinish, gaussian_blur, nearest_patch_finish
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
