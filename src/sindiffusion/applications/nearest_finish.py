"""A sharp last step: replace every patch of the finished sample by its nearest training patch
(``sample.finish: nearest``), as GPNN ends each of its levels.

Why
---
A denoiser's last steps return a posterior *mean*. For the training-free patch model that is a
softmax-weighted average over many similar patches, and at the last noise levels of a 10-step
run (t ~ 0.1 T, noise std ~ 0.35) it averages fine, stochastic texture (foliage, grass, rock)
into a smooth surface: the samples carry about half the image's fine detail (``sharpness`` ~ 0.57).
The last call at t = 0 cannot undo it: the nearest *sharp* patch to a *blurred* query is a flat
one, so the blur survives.

What
----
GPNN's remedy, in one pass over the finished sample ``x [B, 3, H, W]`` (in [-1, 1]):

* **keys blurred, values sharp**: each ``patch x patch`` patch of ``x`` is compared with the
  patches of the training image *blurred* by a Gaussian of ``blur`` px (as blurred as the sample),
  and replaced by the *sharp* patch at the same position;
* **a narrow vote**: every pixel takes the votes of the patches around it weighted by a Gaussian
  of ``window`` px around each patch's centre (0.5 px: almost only the centre patch, so
  neighbours that chose different patches are not averaged into a blur again);
* **coherent sources** (``coherence > 0``, off by default): before the vote, each pixel's choice is
  moved towards its neighbours', so that neighbouring pixels copy from neighbouring places of the
  image (:func:`coherent_sources`). Alone, each pixel picks its patch for itself, and on a soft
  sample neighbours pick from unrelated places: the 0.5 px vote then sets unrelated sharp pixels side
  by side (a grain: the UNet's samples at 250 px scored sharpness 1.10-1.18 on 7 of 14 images), and a
  wider vote averages them into a blur. With coherent sources a 0.6 px vote agrees with itself:
  sharpness 0.99 on average (0.90-1.06), the same patch SWD (docs/results/any-size.md).

The search costs (queries x keys): it runs over the keys of every ``key_stride``-th row and column
(4x fewer at 2), in ``dims`` principal components, shortlisting ``top_k`` candidates; their
neighbours within the stride are then compared exactly in all dimensions (the patch model's
search-then-rerank). A 250x500 sample of a 250 px image: 22 s with every key, 7.7 s so, the
same sharpness; on Places50 3, 6, 14, 20 at 128 px the same patch SWD and sharpness (+-0.001).
Blocks of ``chunk`` queries bound the memory to ``chunk x N / key_stride^2`` floats (on the CPU the
blocks are smaller, sized for the cache: :func:`~sindiffusion.models.shortlist.block_rows`).

It uses only the training image, not the model, so it is a :class:`SamplingHook` (its
:meth:`~NearestPatchFinish.finish`) that any model kind and any start can use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..diffusion.loop import SamplingContext, SamplingHook
from ..models.cell_search import CellIndex
from ..models.shortlist import block_rows, candidate_dots, top_scores
from .patch_votes import fold_votes, padded_patches

__all__ = ["COHERENCE_SWEEPS", "NearestPatchFinish", "coherent_sources", "gaussian_blur", "nearest_patch_finish"]


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``image [B, C, H, W]`` (reflect padding); ``sigma <= 0`` = identity."""
    if sigma <= 0:
        return image
    r = max(1, math.ceil(2.5 * sigma))
    k = torch.arange(-r, r + 1, dtype=image.dtype, device=image.device)
    g = torch.exp(-(k**2) / (2 * sigma**2))
    g = g / g.sum()
    c = image.shape[1]
    pad_r = min(r, image.shape[-1] - 1)
    pad_c = min(r, image.shape[-2] - 1)
    x = F.pad(image, (pad_r, pad_r, 0, 0), mode="reflect") if pad_r else image
    x = F.conv2d(x, g[r - pad_r : r + pad_r + 1].view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.pad(x, (0, 0, pad_c, pad_c), mode="reflect") if pad_c else x
    return F.conv2d(x, g[r - pad_c : r + pad_c + 1].view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _positions(size: tuple[int, int], stride: int, device: torch.device) -> torch.Tensor:
    """Indices (row-major over ``size``) of the positions on every ``stride``-th row and column."""
    h, w = size
    rows, cols = torch.arange(0, h, stride, device=device), torch.arange(0, w, stride, device=device)
    return (rows[:, None] * w + cols[None, :]).reshape(-1)


#: Sweeps of :func:`coherent_sources` (each updates both halves of a checkerboard once). The vote
#: around a patch centre reaches about a pixel, so only near neighbours need to agree: on Places50 10
#: at 250 px, 16 sweeps leave as many coherent neighbour pairs as 4 (0.59 of them; 0.27 before).
COHERENCE_SWEEPS = 4

#: Positions scored at once by :func:`coherent_sources` (a ``[block, D]`` gather of keys and queries).
_BLOCK = 65536

# (row, column) steps to the four neighbours of a canvas pixel.
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def coherent_sources(
    best: torch.Tensor,
    queries: torch.Tensor,
    keys: torch.Tensor,
    keys_sq: torch.Tensor,
    image_size: tuple[int, int],
    weight: float,
    sweeps: int = COHERENCE_SWEEPS,
) -> torch.Tensor:
    """Each canvas pixel's source patch moved towards its neighbours' (a coherent copy), ``[B, H, W]``.

    Why: the nearest patch of each pixel is chosen alone, so at a soft query neighbouring pixels
    take their patches from unrelated places; the narrow vote then sets side by side the centre
    pixels of unrelated sharp patches: a grain of light and shade where the image has crisp edges.
    Copying neighbouring pixels from neighbouring places of the image (PatchMatch's coherence,
    Ashikhmin's coherent synthesis) keeps the image's own fine structure between them.

    How: iterated conditional modes on ``sum_p |q_p - k_s(p)|^2 + lam * #{neighbours n of p with
    s(n) != s(p) + (n - p)}``, ``lam = weight x`` the mean nearest distance (so the weight is free of
    the image's contrast). Each pixel chooses among its current source and the four its neighbours
    propose (their source shifted back by the step between them), the two halves of a checkerboard in
    turn (so that two neighbours never move at once and the energy never rises).

    Args:
        best: ``[B, H, W]`` int64, each pixel's nearest patch (row-major over ``image_size``).
        queries: ``[B H W, D]`` the canvas's patches; keys: ``[N, D]`` the image's (``N = h w``),
            ``keys_sq [N]`` their squared norms.
        weight: the smoothness weight ``lam`` in units of the mean nearest distance (> 0).
        sweeps: checkerboard sweeps.
    Returns:
        ``[B, H, W]`` int64 sources (a pixel changes its source only to one of lower cost).
    """
    b, h, w = best.shape
    h_img, w_img = image_size
    dev = best.device
    q_sq = (queries**2).sum(1)  # [B H W]

    def distance(pos: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """``|q_pos - k_src|^2`` for canvas positions ``pos [M]`` and valid sources ``src [M]``."""
        out = torch.empty(pos.shape[0], dtype=queries.dtype, device=dev)
        for i in range(0, pos.shape[0], _BLOCK):  # bounded memory: one [block, D] gather at a time
            p, k = pos[i : i + _BLOCK], src[i : i + _BLOCK]
            out[i : i + _BLOCK] = keys_sq[k] - 2 * candidate_dots(keys, k[:, None], queries[p])[:, 0] + q_sq[p]
        return out

    src = best.reshape(-1).clone()
    every = torch.arange(src.shape[0], device=dev)
    cur_d = distance(every, src)
    lam = weight * float(cur_d.clamp_min(0).mean())
    y, x = (every % (h * w)) // w, every % w
    halves = []  # per checkerboard half: its positions and, per direction, each one's neighbour (-1: none)
    for half in (0, 1):
        pos = every[(y + x) % 2 == half]
        py, px = y[pos], x[pos]
        nbrs = []
        for dy, dx in _NEIGHBOURS:
            inside = (py + dy >= 0) & (py + dy < h) & (px + dx >= 0) & (px + dx < w)
            nbrs.append(torch.where(inside, pos + dy * w + dx, -1))
        halves.append((pos, nbrs))
    for _ in range(sweeps):
        for pos, nbrs in halves:
            proposals = []  # each neighbour's source shifted back by the step to it (-1: none)
            for nb, (dy, dx) in zip(nbrs, _NEIGHBOURS):
                s = src[nb.clamp_min(0)]
                r, c = s // w_img - dy, s % w_img - dx
                ok = (nb >= 0) & (r >= 0) & (r < h_img) & (c >= 0) & (c < w_img)
                proposals.append(torch.where(ok, r * w_img + c, -1))
            props = torch.stack(proposals)  # [4, M]
            cur = src[pos]
            cands = torch.cat([cur[None], props])  # [5, M]: the current source first
            disagree = len(nbrs) - (props[None] == cands[:, None]).sum(1)  # [5, M]
            # score only the proposals that differ from the current source (in a coherent region,
            # most do not): the others cost what the current one does
            d = cur_d[pos].expand(5, -1).clone()
            differs = (props >= 0) & (props != cur)
            which, at = differs.nonzero(as_tuple=True)
            d[1:][which, at] = distance(pos[at], props[which, at])
            cost = torch.where(cands >= 0, d + lam * disagree, math.inf)
            pick = cost.argmin(0, keepdim=True)  # ties keep the current source (index 0)
            src[pos] = cands.gather(0, pick)[0]
            cur_d[pos] = d.gather(0, pick)[0]
    return src.view(b, h, w)


def nearest_patch_finish(
    x: torch.Tensor,
    image: torch.Tensor,
    *,
    patch: int = 7,
    blur: float = 1.5,
    window: float = 0.5,
    dims: int = 16,
    top_k: int = 4,
    key_stride: int = 2,
    chunk: int = 4096,
    cells: int = 0,
    probes: int = 8,
    coherence: float = 0.0,
) -> torch.Tensor:
    """``x [B, 3, H, W]`` with every patch replaced by its nearest training patch (module docstring).

    Args:
        image: the training image ``[1, 3, h, w]`` in [-1, 1].
        patch: odd patch side; blur: Gaussian std (px) of the keys; window: Gaussian std (px) of the
            vote around each patch centre; dims: principal components searched (0 = all);
            top_k: candidates reranked exactly; key_stride: keep the training patches of every
            ``s``-th row and column (``s^2`` times fewer keys: the search costs queries x keys);
            chunk: queries per block; cells, probes: with ``cells > 0`` the shortlist comes from a
            :class:`~sindiffusion.models.cell_search.CellIndex` over *every* key (``key_stride`` is
            then ignored: no neighbours to refine) instead of scoring every strided key.
        coherence: > 0: the chosen patches made coherent with their neighbours'
            (:func:`coherent_sources`, this weight); 0 = each pixel's nearest patch.
    Returns:
        ``[B, 3, H, W]`` in [-1, 1]: every pixel a weighted mean of training pixels.
    """
    if patch % 2 == 0 or patch < 1:
        raise ValueError(f"the finish patch side must be odd and >= 1, got {patch}")
    image = image.to(x.device, torch.float32)
    x = x.float()
    h_img, w_img = image.shape[-2:]
    all_keys = padded_patches(gaussian_blur(image, blur), patch)[0]  # [N, D] blurred: what a blurred sample matches
    values = padded_patches(image, patch)[0]  # [N, D] sharp: what it is replaced by
    use_cells = cells > 0 and 0 < dims < all_keys.shape[1]  # the cells search the projected keys
    if use_cells:  # every key, shortlisted by cells: nothing to refine
        key_stride = 1
    keep = _positions((h_img, w_img), key_stride, image.device)
    keys = all_keys[keep]  # searched: every key_stride-th position; the winner is refined around it
    n, d = keys.shape
    mean = keys.mean(0)
    basis = None
    if 0 < dims < d:
        centred = keys - mean
        _, vecs = torch.linalg.eigh((centred.T @ centred).double() / max(1, n - 1))
        basis = vecs[:, -dims:].to(keys.dtype)  # [D, m], the top principal components
    proj_keys = (keys - mean) @ basis if basis is not None else keys - mean
    proj_sq = (proj_keys**2).sum(1)
    all_sq = (all_keys**2).sum(1)
    k = min(top_k, n) if basis is not None else 1
    # the full-resolution neighbours of a strided position: offsets within the stride
    offs = torch.arange(-(key_stride - 1), key_stride, device=x.device)
    near = (offs[:, None] * w_img + offs[None, :]).reshape(-1)  # [(2s-1)^2] index offsets
    dr = offs[:, None].expand(-1, len(offs)).reshape(-1)
    dc = offs[None, :].expand(len(offs), -1).reshape(-1)
    b, _, h, w = x.shape
    queries = padded_patches(x, patch).reshape(b * h * w, d)
    shortlist = None
    if use_cells:  # all queries at once (the index visits each cell once), projected chunk by chunk
        # 4 k candidates reranked exactly: no neighbours to refine, so a longer shortlist instead
        # (the strided search reranks k x 9 at key_stride 2).
        proj_q = torch.cat([(queries[i : i + chunk] - mean) @ basis for i in range(0, queries.shape[0], chunk)])
        shortlist = CellIndex(proj_keys, cells, probes).search(proj_q, 4 * k)  # [BHW, 4k]
    best = torch.empty(queries.shape[0], dtype=torch.long, device=x.device)
    buffer = None  # one block of distances for every chunk (models/shortlist.py says why)
    proj_keys_t = proj_keys.T.contiguous()
    rows = block_rows(n, chunk, x.device)
    for start in range(0, queries.shape[0], rows):
        q = queries[start : start + rows]
        if shortlist is not None:
            short = shortlist[start : start + rows]  # [c, 4k]
        else:
            qp = (q - mean) @ basis if basis is not None else q - mean
            _, short, buffer = top_scores(qp, proj_keys_t, proj_sq, k, buffer, alpha=-2.0, largest=False)
        pos = keep[short]  # [c, k] full-resolution positions
        if key_stride > 1:  # every position within the stride around each candidate, inside the image
            r, c = (pos // w_img)[..., None] + dr, (pos % w_img)[..., None] + dc
            inside = (r >= 0) & (r < h_img) & (c >= 0) & (c < w_img)
            pos = torch.where(inside, pos[..., None] + near, pos[..., None]).reshape(q.shape[0], -1)
        exact = all_sq[pos] - 2 * candidate_dots(all_keys, pos, q)  # |q - key|^2 - |q|^2
        best[start : start + rows] = pos.gather(1, exact.argmin(1, keepdim=True))[:, 0]
    if coherence > 0:
        best = coherent_sources(best.reshape(b, h, w), queries, all_keys, all_sq, (h_img, w_img), coherence)
    # A narrow Gaussian vote of the chosen sharp patches around each patch centre.
    r = torch.arange(patch, dtype=x.dtype, device=x.device) - patch // 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * max(window, 1e-3) ** 2)).reshape(-1).repeat(3)
    return fold_votes(values, best.reshape(b, h * w), (h_img, w_img), (h, w), patch, g).clamp(-1, 1)


class NearestPatchFinish(SamplingHook):
    """:func:`nearest_patch_finish` of the loop's final image, with ``image [1, 3, h, w]`` in [-1, 1]."""

    def __init__(self, image: torch.Tensor, **options: float | int) -> None:
        self.image = image.float()
        self.options = options

    def finish(self, x0: torch.Tensor, ctx: SamplingContext) -> torch.Tensor:
        return nearest_patch_finish(x0, self.image, **self.options).to(x0.dtype)
