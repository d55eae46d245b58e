"""The k-means cells search (models/cell_search.py) and its use by the patch model."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sindiffusion.models.cell_search import CellIndex, recall
from sindiffusion.models.patch import PatchConfig, PatchDenoiser
from sindiffusion.validation import FieldError


def _clusters(n: int = 3000, m: int = 8, groups: int = 20, seed: int = 0) -> torch.Tensor:
    """``[n, m]`` points around ``groups`` random centres: the shape of patch space (textures)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(groups, m, generator=g) * 3
    return centres[torch.randint(groups, (n,), generator=g)] + 0.5 * torch.randn(n, m, generator=g)


def test_searching_every_cell_is_the_exact_search():
    keys = _clusters()
    queries = keys[:200] + 0.1 * torch.randn(200, keys.shape[1], generator=torch.Generator().manual_seed(1))
    index = CellIndex(keys, cells=16, probes=16)
    exact = torch.cdist(queries, keys).topk(5, dim=1, largest=False).indices
    assert torch.equal(index.search(queries, 5), exact)


def test_a_few_cells_find_most_neighbours_and_the_index_is_deterministic():
    keys = _clusters()
    queries = keys[::7] + 0.3 * torch.randn(len(keys[::7]), keys.shape[1], generator=torch.Generator().manual_seed(2))
    index = CellIndex(keys, cells=32, probes=4)
    assert max(len(c) for c in index.lists) < 0.5 * len(keys)  # every query scores under half of the keys
    assert recall(index, queries, 8) > 0.9
    assert torch.equal(index.search(queries, 8), CellIndex(keys, cells=32, probes=4).search(queries, 8))


def test_a_cell_list_shorter_than_k_repeats_its_last_index():
    keys = _clusters(n=40, groups=4)
    out = CellIndex(keys, cells=40, probes=1).search(keys[:3], 4)
    assert out.shape == (3, 4) and torch.equal(out[:, 0], torch.arange(3))


def test_the_patch_model_with_cells_stays_close_to_the_exact_shortlist():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(28.0), indexing="ij")
    image = torch.stack([torch.sin(xx / 3), torch.cos(yy / 4), torch.sin((xx + yy) / 5)])[None] * 0.8
    abar = torch.linspace(0.999, 0.01, 100, dtype=torch.float64)
    cfg = PatchConfig(patch_size=5, scales=2, top_k=8, pca_dims=6)
    x = image.expand(2, -1, -1, -1) * abar[20].sqrt().float() + torch.randn(2, 3, 24, 28, generator=g) * 0.2
    exact = PatchDenoiser(cfg, image, abar).denoise(x, 20)
    all_cells = PatchDenoiser(dataclasses.replace(cfg, search_cells=8, search_probes=8), image, abar).denoise(x, 20)
    assert torch.allclose(all_cells, exact, atol=1e-5)  # every cell probed: the same shortlist
    few = PatchDenoiser(dataclasses.replace(cfg, search_cells=8, search_probes=3), image, abar).denoise(x, 20)
    assert (few - exact).abs().mean() < 0.05


def test_search_cells_needs_top_k():
    with pytest.raises(FieldError, match="needs top_k") as err:
        PatchConfig(search_cells=64, top_k=0)
    assert err.value.key == "search_cells"
