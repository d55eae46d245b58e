"""The block operations of the patch searches equal their plain torch definitions."""

from __future__ import annotations

import pytest
import torch

from sindiffusion.models.shortlist import GROUPED_MIN, block_topk, candidate_dots, top_scores


@pytest.mark.parametrize("largest,alpha", [(True, 1.0), (False, -2.0)])
def test_top_scores_are_the_topk_of_the_full_matrix(largest, alpha):
    g = torch.Generator().manual_seed(0)
    q, keys_t, bias = torch.randn(9, 5, generator=g), torch.randn(5, 40, generator=g), torch.randn(40, generator=g)
    full = torch.addmm(bias, q, keys_t, alpha=alpha)
    want, want_idx = full.topk(4, dim=1, largest=largest)
    top, idx, _ = top_scores(q, keys_t, bias, 4, alpha=alpha, largest=largest)
    assert torch.equal(idx, want_idx) and torch.allclose(top, want)


def test_one_buffer_serves_every_block_and_a_shorter_last_one():
    g = torch.Generator().manual_seed(1)
    q, keys_t, bias = torch.randn(10, 3, generator=g), torch.randn(3, 25, generator=g), torch.randn(25, generator=g)
    want = torch.addmm(bias, q, keys_t).topk(3, dim=1).indices
    buffer, got = None, []
    for start in range(0, 10, 4):  # blocks of 4, 4, 2
        _, idx, buffer = top_scores(q[start : start + 4], keys_t, bias, 3, buffer)
        if start == 0:
            first = buffer.data_ptr()
        got.append(idx)
    assert buffer.data_ptr() == first and buffer.shape == (4, 25)
    assert torch.equal(torch.cat(got), want)


def test_a_wrong_buffer_is_replaced_not_written_past():
    q, keys_t, bias = torch.randn(6, 3), torch.randn(3, 8), torch.zeros(8)
    small = torch.zeros(2, 8)
    _, idx, buffer = top_scores(q, keys_t, bias, 2, small)
    assert buffer.shape == (6, 8) and torch.equal(small, torch.zeros(2, 8))
    assert torch.equal(idx, (q @ keys_t).topk(2, dim=1).indices)


def test_candidate_dots_are_the_batched_products():
    g = torch.Generator().manual_seed(2)
    table, q = torch.randn(30, 7, generator=g), torch.randn(5, 7, generator=g)
    index = torch.randint(0, 30, (5, 4), generator=g)
    want = torch.bmm(table[index], q[:, :, None])[..., 0]
    assert torch.allclose(candidate_dots(table, index, q), want, atol=1e-6)


@pytest.mark.parametrize("n", [8192, 9001, 20000])
@pytest.mark.parametrize("k", [1, 4, 16])
@pytest.mark.parametrize("largest", [True, False])
def test_block_topk_is_topk_on_long_rows(n, k, largest):
    """The two-stage path (rows of >= GROUPED_MIN columns; a last group shorter than the others at
    9001) returns what ``topk`` returns, including a row whose best values share one group."""
    g = torch.Generator().manual_seed(n + k)
    scores = torch.randn(6, n, generator=g)
    scores[0, 100 : 100 + k] = 50.0 if largest else -50.0  # all of row 0's best in one group
    scores[1, -k:] = 60.0 if largest else -60.0  # row 1's best in the last (shorter) group
    want = scores.topk(k, dim=1, largest=largest)
    got = block_topk(scores, k, largest)
    assert n >= GROUPED_MIN
    assert torch.equal(got[0], want.values)
    assert torch.equal(got[1].sort(1).values, want.indices.sort(1).values)


def test_block_topk_on_short_rows_is_plain_topk():
    scores = torch.randn(3, 100)
    assert torch.equal(block_topk(scores, 5)[1], scores.topk(5, dim=1).indices)
