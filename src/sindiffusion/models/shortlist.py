"""The two block operations of every patch search (the patch model's shortlist and the nearest-patch
finish), written for the CPU's memory system rather than its arithmetic.

A block of ``c`` queries against ``N`` keys makes a ``[c, N]`` logits matrix: 64 MB for 1024
queries and the 15,625 keys of a 250x250 image (every second row and column). Allocated afresh for
every block, the allocator hands it back to the kernel and gets it again, page by page (37 million
minor page faults and 74 s of system time for six 250x500 samples). :func:`top_scores` writes every
block into one buffer instead, and on the CPU :func:`block_rows` sizes the block to stay in the
cache (the product writes it, the selection reads it straight back). The exact rerank of the
shortlisted candidates, a batch of ``[k, D] x [D]`` products, runs as one gather and an elementwise
product (2.3x faster than indexing and ``torch.bmm`` on such thin batches). Measured in
docs/results/any-size.md, "Speed".
"""

from __future__ import annotations

import torch

__all__ = ["BLOCK_BYTES", "block_rows", "block_topk", "candidate_dots", "score_block", "top_scores"]

#: The size of a block of scores on the CPU: small enough to stay in the last-level cache between the
#: product that writes it and the selection that reads it (8 MB was the fastest of 2-32 MB for 5,400
#: to 62,500 keys on a 2-core AMD EPYC: 1.4-2.4x faster per query than blocks of 1024 queries).
BLOCK_BYTES = 8 << 20


def block_rows(n_keys: int, limit: int, device: torch.device | str = "cpu") -> int:
    """Queries per block against ``n_keys`` keys: a :data:`BLOCK_BYTES` block of float32 scores on the
    CPU (at least 32 rows), ``limit`` (the memory bound, e.g. ``model.chunk_size``) at most, and
    ``limit`` itself on a GPU, whose kernels want large blocks."""
    if torch.device(device).type != "cpu":
        return limit
    return max(1, min(limit, max(32, BLOCK_BYTES // (4 * max(1, n_keys)))))


def top_scores(
    queries: torch.Tensor,
    keys_t: torch.Tensor,
    bias: torch.Tensor,
    k: int,
    buffer: torch.Tensor | None = None,
    alpha: float = 1.0,
    largest: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best of ``bias + alpha * queries @ keys_t`` for every query.

    Args:
        queries: ``[c, d]``; keys_t: ``[d, N]``; bias: ``[N]``.
        k: how many to keep (``1 <= k <= N``); largest: the largest scores, or the smallest.
        buffer: ``[C, N]`` with ``C >= c``, reused for the scores (``None``: allocate one).
    Returns:
        ``(scores [c, k], index [c, k], buffer)``: the kept scores, their key indices, and the buffer
        to pass to the next block.
    """
    scores, buffer = score_block(queries, keys_t, bias, buffer, alpha)
    top, idx = block_topk(scores, k, largest)
    return top, idx, buffer


def score_block(
    queries: torch.Tensor,
    keys_t: torch.Tensor,
    bias: torch.Tensor,
    buffer: torch.Tensor | None = None,
    alpha: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``bias + alpha * queries @ keys_t`` (``[c, d] x [d, N] -> [c, N]``) written into ``buffer``.

    ``buffer``: ``[C, N]`` with ``C >= c`` of the queries' dtype and device, reused; otherwise (or
    ``None``) a new one. Returns ``(scores, buffer)``: ``scores`` is a view of the buffer's first
    ``c`` rows, overwritten by the next call with the same buffer.
    """
    c, n = queries.shape[0], keys_t.shape[1]
    if (
        buffer is None
        or buffer.shape[0] < c
        or buffer.shape[1] != n
        or buffer.dtype != queries.dtype
        or buffer.device != queries.device
    ):
        buffer = torch.empty(max(c, 1), n, dtype=queries.dtype, device=queries.device)
    return torch.addmm(bias, queries, keys_t, alpha=alpha, out=buffer[:c]), buffer


#: Rows at least this long take :func:`block_topk`'s two-stage path (shorter ones: plain ``topk``).
GROUPED_MIN = 8192


def block_topk(scores: torch.Tensor, k: int, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``scores.topk(k, dim=1, largest=largest)`` of ``scores [c, N]``, the same values and indices.

    For long rows (``N >= GROUPED_MIN``) in two stages: the best value of every group of ``g``
    consecutive columns, the ``k`` best groups, then the ``k`` best of their ``k g`` columns. Exact:
    each of the ``k`` best values lies in a group whose best value is at least as good, and at most
    ``k`` groups can hold one of them. ``topk`` over the whole row reads it once per selection
    pass; the group maxima are one vectorised pass (1.6x faster at 1024 x 20,800 with k = 16,
    2.5x at 4096 x 15,625 with k = 4, on a 2-core AMD EPYC).
    """
    c, n = scores.shape
    if n < GROUPED_MIN or k > n // 64:
        return scores.topk(k, dim=1, largest=largest)
    g = 32 if k <= 8 else 64
    full = n // g * g
    reduce = torch.amax if largest else torch.amin
    best = reduce(scores[:, :full].view(c, n // g, g), 2)  # [c, groups]
    if full < n:  # the last, shorter group
        best = torch.cat([best, reduce(scores[:, full:], 1, keepdim=True)], 1)
    groups = best.topk(k, dim=1, largest=largest, sorted=False).indices  # [c, k]
    cols = (groups[..., None] * g + torch.arange(g, device=scores.device)).view(c, -1)  # [c, k g]
    outside = cols >= n  # columns past the end of the last group
    cand = scores.gather(1, cols.clamp_(max=n - 1))
    cand.masked_fill_(outside, float("-inf") if largest else float("inf"))
    top, pos = cand.topk(k, dim=1, largest=largest)
    return top, cols.gather(1, pos)


def candidate_dots(table: torch.Tensor, index: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """``table[index[i, j]] . queries[i]`` for every query ``i`` and candidate ``j``.

    Args:
        table: ``[N, D]``; index: ``[c, k]`` (int64); queries: ``[c, D]``.
    Returns:
        ``[c, k]``.
    """
    c, k = index.shape
    cand = table.index_select(0, index.reshape(-1)).view(c, k, -1)
    return (cand * queries[:, None]).sum(-1)
