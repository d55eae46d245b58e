"""Approximate nearest-patch search by k-means cells (an inverted file), for the patch model's
shortlist and the nearest-patch finish.

Why
---
Both searches score every query against every training patch: one ``[queries, N]`` product and a
top-k over it. At 250 px a 2x-wide batch of 6 samples is ~190k queries per step against ~12k
patches, and the product plus the top-k are most of the sampling time (the top-k alone reads and
writes the whole ``[queries, N]`` block). Most of that work is wasted: a query's nearest patches
lie in a small part of patch space.

What
----
The keys ``[N, m]`` are grouped into ``cells`` k-means cells (a few Lloyd iterations from a fixed,
seeded start, so the index and every sample stay deterministic). Each cell lists the keys of its
``probes`` nearest cells (by centroid distance, itself included). A query goes to its nearest
centroid, and all queries of one cell are scored, in one dense product, only against that cell's
list: ``probes / cells`` of the keys (1/8 at 8 of 64). A query whose true neighbours straddle
cells farther away than ``probes`` loses them; :func:`recall` measures how often that happens.
"""

from __future__ import annotations

import torch

__all__ = ["CellIndex", "recall"]


def _sq_dist(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """``|a_i - b_j|^2 - |a_i|^2`` for ``a [M, m]``, ``b [N, m]``, ``b_sq [N]``: ``[M, N]`` (the
    dropped ``|a_i|^2`` does not change any ranking over ``j``)."""
    return torch.addmm(b_sq, a, b.T, alpha=-2.0)


class CellIndex:
    """k-means cells over ``keys [N, m]`` (float32) answering approximate k-nearest queries.

    Args:
        keys: the points searched, ``[N, m]``.
        cells: number of k-means cells (at most ``N``).
        probes: cells whose keys each cell's queries are scored against (nearest centroids first).
        iters: Lloyd iterations; seed: the generator seed of the initial centroids.
    """

    def __init__(self, keys: torch.Tensor, cells: int = 64, probes: int = 8, iters: int = 6, seed: int = 0) -> None:
        n = keys.shape[0]
        cells = max(1, min(cells, n))
        probes = max(1, min(probes, cells))
        gen = torch.Generator(device="cpu").manual_seed(seed)
        centroids = keys[torch.randperm(n, generator=gen)[:cells].to(keys.device)].clone()
        key_sq = (keys**2).sum(1)
        for _ in range(iters):
            assign = _sq_dist(keys, centroids, (centroids**2).sum(1)).argmin(1)
            sums = torch.zeros_like(centroids).index_add_(0, assign, keys)
            counts = torch.bincount(assign, minlength=cells).to(keys.dtype)
            filled = counts > 0  # an empty cell keeps its old centroid
            centroids[filled] = sums[filled] / counts[filled, None]
        assign = _sq_dist(keys, centroids, (centroids**2).sum(1)).argmin(1)
        c_sq = (centroids**2).sum(1)
        near = _sq_dist(centroids, centroids, c_sq).topk(probes, dim=1, largest=False).indices  # [cells, probes]
        order = torch.argsort(assign)
        bounds = torch.searchsorted(assign[order], torch.arange(cells + 1, device=keys.device))
        members = [order[bounds[c] : bounds[c + 1]] for c in range(cells)]
        #: per cell, the indices of the keys its queries are scored against (``[L_c]``, int64)
        self.lists = [torch.cat([members[int(j)] for j in near[c]]) for c in range(cells)]
        # Each list's keys gathered once here, not on every search (N x probes x m floats in all).
        self.list_keys = [keys[cand].contiguous() for cand in self.lists]
        self.list_sq = [key_sq[cand] for cand in self.lists]
        self.keys, self.key_sq = keys, key_sq
        self.centroids, self.centroid_sq = centroids, c_sq

    def search(self, queries: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
        """Indices ``[M, k]`` (into ``keys``) of approximately the ``k`` nearest keys of every query
        ``[M, m]``, nearest first. A cell's list shorter than ``k`` repeats its last index. Pass all
        queries at once: each call visits every cell."""
        cell = _sq_dist(queries, self.centroids, self.centroid_sq).argmin(1)  # [M]
        out = torch.empty(queries.shape[0], k, dtype=torch.long, device=queries.device)
        order = torch.argsort(cell)
        bounds = torch.searchsorted(cell[order], torch.arange(len(self.lists) + 1, device=queries.device)).tolist()
        for c, cand in enumerate(self.lists):
            rows = order[bounds[c] : bounds[c + 1]]
            if not rows.numel():
                continue
            keys, key_sq, kk = self.list_keys[c], self.list_sq[c], min(k, cand.numel())
            for start in range(0, rows.numel(), chunk):
                r = rows[start : start + chunk]
                best = _sq_dist(queries[r], keys, key_sq).topk(kk, dim=1, largest=False).indices
                found = cand[best]
                if kk < k:
                    found = torch.cat([found, found[:, -1:].expand(-1, k - kk)], 1)
                out[r] = found
        return out


def recall(index: CellIndex, queries: torch.Tensor, k: int) -> float:
    """Fraction of the exact ``k`` nearest keys of ``queries [M, m]`` that :meth:`CellIndex.search` finds."""
    exact = _sq_dist(queries, index.keys, index.key_sq).topk(k, dim=1, largest=False).indices
    found = index.search(queries, k)
    hits = (exact[:, :, None] == found[:, None, :]).any(2).float()
    return float(hits.mean())
