"""A training-free denoiser: the closed-form posterior mean over the training image's patches.

Why this works
--------------
For a finite training set the MMSE denoiser has a closed form. Take a patch-local denoiser: the
clean value around a pixel is predicted from the noisy ``p x p`` patch ``q`` around it, and the
"training set" is the set of every ``p x p`` patch ``{p_i}`` of the one training image. Under the
forward process ``q = sqrt(abar_t) p + sqrt(1 - abar_t) eps`` with a uniform prior over the
patches, Bayes gives (Kamb & Ganguli 2024; Qiu, Kutulakos & Lindell, CVPR 2026)::

    E[p | q] = sum_i w_i p_i,    w_i = softmax_i( -||q - sqrt(abar_t) p_i||^2 / (2 sigma_t^2) ),
    sigma_t^2 = 1 - abar_t                                          (the softmax temperature)

Expanding the square, ``||q||^2`` is the same for every ``i`` and drops out of the softmax, so the
weights are one attention call with ``scale = 1 / sigma_t^2``::

    logits_i = ( sqrt(abar_t) q . p_i  -  abar_t ||p_i||^2 / 2 ) / sigma_t^2
             = [q, 1] . [sqrt(abar_t) p_i, -abar_t ||p_i||^2 / 2] * scale

(queries = noisy patches with a 1 appended, keys = scaled clean patches with the bias appended,
values = clean patches), which :func:`torch.nn.functional.scaled_dot_product_attention` computes
in fused, memory-efficient kernels on CPU and GPU. Queries are processed ``chunk_size`` at a time
(on the CPU in smaller, cache-sized blocks: :mod:`sindiffusion.models.shortlist`),
so memory is bounded by ``chunk_size x (number of patches)`` logits even on the math path; no
``N x N`` matrix is ever held.

Aggregation into pixels
-----------------------
Every pixel is covered by ``p^2`` patches, each with its own posterior. ``aggregate: center``
takes only the patch centred on the pixel (values = centre pixels, 3 numbers: cheapest);
``aggregate: window`` averages the estimates of the ``a x a`` (``fold_size``) patches nearest to the
pixel with a Gaussian window (values = the central ``a x a`` sub-patches, folded back with
:func:`torch.nn.functional.fold` and normalised by the folded window), which smooths the seams
between neighbours that picked different training patches.

Borders
-------
``padding: zero`` pads both the training image and the noisy image with zeros (mid-grey in
[-1, 1]) by ``p // 2``: patches on the border then carry an exactly-zero margin, and a noisy
border query (whose margin is also exactly zero) prefers them, so border content (the sky along
the top) stays on the border (the "edge dictionary" of Kamb & Ganguli's ELS machine). ``reflect``
pads with mirrored content, which lets border content appear anywhere. ``both`` offers each
border position twice, zero-padded and reflect-padded, and pads the noisy image with zeros: a
border query still prefers the zero-padded patch, and an interior query of a sample *larger* than
the training image (where a region that was only a border, like a night sky, now spans the
middle) finds that content without a grey margin. With ``zero`` alone such a region has no
matching patch and comes back as a grey/maroon average. ``auto`` is ``zero`` for a sample no
larger than the training image and ``both`` for a taller or wider one: at the training size the
extra patches only let border content into the interior. ``zero`` stays the default: on Places50
at twice the size ``both`` was a wash (docs/results/patch-model.md, "Larger samples").

Coarse-to-fine (one epsilon-model, many scales)
-----------------------------------------------
A single scale with small patches is translation-equivariant texture with no layout. The image
pyramid (ratio ``scale_ratio``, down to a coarsest short side of about ``coarsest_ratio * p``
pixels) gives the coarse scales patches that cover a large fraction of the image, so their
posterior decides the layout. The denoiser evaluates every scale on the *same* ``x_t``:
area-downsampling ``x_t`` by ``s`` averages ``s^2`` independent noise values, so at scale ``k``
the noise variance is ``sigma_t^2 * r_k`` with ``r_k = (H_k W_k) / (H W)`` and the coarse posterior
uses that temperature (coarse scales are less noisy and commit to a layout earlier). The scales
are combined like a Laplacian pyramid, coarsest first::

    xhat_K = D_K(x_t^K)
    xhat_k = D_k(x_t^k) - up(down(D_k(x_t^k))) + up(xhat_{k+1})     (k = K-1 ... 0)

i.e. each finer scale keeps only the detail band of its own estimate and takes its low
frequencies from the coarser result (the reference method's ``x <- x - up(down(x)) + up(x_c)``).
Finer scales may be switched on only below a noise level (``fine_start``, a fraction of T):
above it a scale returns the upsampled coarser estimate, which is SDEdit's "restart the finer
scale from the upsampled coarse result" expressed inside one epsilon-model. Because the whole
multi-scale estimate is one function ``(x_t, t) -> eps``, every sampler, hook and application of
the package works with it unchanged.

Speed knobs (each trades exactness for time; measured in docs/results/patch-model.md)
------------------------------------------------------------------------------------
``pca_dims`` projects queries and keys on the top principal components of the scale's patches
(distances are then exact up to the patch variance the components miss); ``key_stride`` keeps
every ``s``-th patch position of the training image (subsampled patch set). ``top_k`` keeps, per
query, only the ``k`` patches with the largest logits and normalises the softmax over them (the
reference method's nearest-k); with ``pca_dims`` as well, the projected distances only *shortlist*
the ``k`` candidates and their weights are recomputed from exact distances (search in a few
dimensions, rerank in all of them). The shortlist costs one ``[chunk, N]`` product in ``m`` instead
of ``3 p^2`` dimensions and a top-k; the exponentials and the value product shrink from ``N`` to
``k`` per query. Truncating the softmax is exact when the posterior is concentrated (low noise) and
biased towards the nearest patches when it is flat (high noise).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import FieldError, check_fields, opt
from .cell_search import CellIndex
from .shortlist import block_rows, candidate_dots, score_block, top_scores


@dataclass(frozen=True)
class PatchConfig:
    """The ``model`` section for ``kind: patch``; every key is range-checked when params are loaded."""

    kind: Literal["patch"] = "patch"
    patch_size: int = opt(7, ge=1, le=63, help="odd side of the patches (px) at every scale")
    patch_sizes: tuple[int, ...] = opt(
        (), item={"ge": 1, "le": 63}, help="optional per-scale patch sides, finest first (length = scales)"
    )
    scale_ratio: float = opt(0.5, gt=0, lt=1, help="pyramid ratio between consecutive scales")
    scales: int = opt(0, ge=0, le=12, help="number of scales; 0 = down to coarsest_ratio x patch side")
    coarsest_ratio: float = opt(1.6, gt=0, help="coarsest short side / patch side when scales is 0")
    padding: Literal["zero", "reflect", "both", "auto"] = opt(
        "zero",
        help="zero: border patches form their own dictionary; both: plus their reflect-padded copies; "
        "auto: zero up to the training size, both for larger samples",
    )
    aggregate: Literal["center", "window"] = opt("window", help="centre pixel, or Gaussian-window fold")
    fold_size: int = opt(3, ge=1, help="aggregate window: side of the central sub-patch each patch votes for")
    fold_sigma: float = opt(1.0, gt=0, help="Gaussian window width (px)")
    fine_start: float = opt(1.0, ge=0, le=1, help="finer scales are active for t <= fine_start * T")
    pca_dims: int = opt(0, ge=0, help="project patches on this many principal components (0 = exact)")
    top_k: int = opt(
        0, ge=0, le=65536, help="softmax over each query's k nearest patches (0 = all); with pca_dims: exact rerank"
    )
    key_stride: int = opt(1, ge=1, le=16, help="keep every s-th training patch position")
    query_stride: int = opt(1, ge=1, le=8, help="denoise a patch around every s-th pixel (window fold fills in)")
    chunk_size: int = opt(1024, ge=1, le=1 << 20, help="queries per block: memory ~ chunk x patches x 4 B")
    search_cells: int = opt(
        0,
        ge=0,
        le=4096,
        help="with top_k: shortlist among the patches of a query's nearest k-means cells (0 = every patch)",
    )
    search_probes: int = opt(8, ge=1, le=4096, help="with search_cells: cells scored per query (nearest first)")
    temperature: Literal["exact", "unit"] = opt("exact", help="coarse-scale noise: exact (downsampled) or unit")

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_sizes", tuple(self.patch_sizes))
        self.check()

    def check(self, where: str = "model") -> None:
        """The declared rules of every key (:func:`check_fields`: bounds, choices; they fail only when the
        config is built directly, :func:`~sindiffusion.config.build_section` checks them first), then what
        they cannot say: odd patch sides and checks across keys. ``FieldError`` naming the key; the
        config engine's message says ``model.<key>``."""
        check_fields(self, where)

        def bad(key: str, msg: str) -> None:
            raise FieldError(key, f"{where}.{key}: {msg}" if where != "model" else msg)

        sides = [("patch_size", self.patch_size)] + [(f"patch_sizes[{i}]", p) for i, p in enumerate(self.patch_sizes)]
        for key, p in sides + [("fold_size", self.fold_size)]:
            if p % 2 == 0:
                bad(key, f"must be an odd integer >= 1, got {p}")
        if self.patch_sizes and self.scales and len(self.patch_sizes) != self.scales:
            bad("patch_sizes", f"has {len(self.patch_sizes)} entries but scales is {self.scales}")
        if self.fold_size > min((self.patch_size,) + self.sizes()):
            bad("fold_size", f"{self.fold_size} is larger than the patch side")
        if self.search_cells and not self.top_k:
            bad("search_cells", f"{self.search_cells} needs top_k > 0: the cells only shortlist each query's top_k")
        if self.query_stride > 1 and (self.aggregate != "window" or self.fold_size < 2 * self.query_stride - 1):
            bad(
                "query_stride",
                f"{self.query_stride} leaves pixels without an estimate: needs aggregate: window "
                f"and fold_size >= {2 * self.query_stride - 1}",
            )

    @property
    def border_copies(self) -> bool:
        """Whether the index appends reflect-padded copies of the border patches (``both``, ``auto``)."""
        return self.padding in ("both", "auto")

    def sizes(self) -> tuple[int, ...]:
        return tuple(self.patch_sizes)

    def pyramid_sizes(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """Sizes ``(H_k, W_k)`` of every scale for an image of ``size``, finest first."""
        h, w = size
        if self.scales:
            n = self.scales
        elif self.patch_sizes:
            n = len(self.patch_sizes)
        else:
            target = self.coarsest_ratio * self.patch_size
            n = 1
            while min(h, w) * self.scale_ratio**n >= target - 1e-9:
                n += 1
        return [(max(1, round(h * self.scale_ratio**k)), max(1, round(w * self.scale_ratio**k))) for k in range(n)]

    def patch_size_at(self, k: int) -> int:
        return self.patch_sizes[k] if self.patch_sizes else self.patch_size

    def check_image(self, size: tuple[int, int], where: str = "model") -> None:
        """The coarsest scale must hold at least one whole patch."""
        sizes = self.pyramid_sizes(size)
        for k, (h, w) in enumerate(sizes):
            p = self.patch_size_at(k)
            if p > min(h, w):
                raise ValueError(
                    f"{where}.patch_size: patch side {p} is larger than scale {k} of the "
                    f"{size[0]}x{size[1]} image ({h}x{w}); use fewer scales or smaller patches"
                )


def _down(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area (box) downsampling: averages independent noise exactly like the pyramid averages pixels."""
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="area")


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return (
        x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    )


class _ScalePatches:
    """The patch set of one scale: keys/values as ready-to-use tensors.

    ``patches``: ``[N, 3 p p]`` clean patches in [-1, 1]; ``values``: ``[N, 3 a a]`` (the central
    ``a x a`` sub-patch, ``a = 1`` for centre aggregation); ``mean``/``basis``: PCA (``[3pp]``,
    ``[3pp, m]``) when ``pca_dims > 0``.
    """

    def __init__(self, image: torch.Tensor, p: int, cfg: PatchConfig) -> None:
        pad = p // 2
        # The noisy image is padded like the keys; with "both" like the zero-padded ones, so that a
        # border query keeps preferring border patches.
        mode = "reflect" if cfg.padding == "reflect" else "constant"
        patches = _grid_patches(image, p, mode, cfg.key_stride)  # [N, 3pp]
        # The patches of the padding mode come first (n_primary rows); "both"/"auto" append the
        # reflect-padded copies of the border positions, used or sliced off per call (_posterior).
        self.n_primary = patches.shape[0]
        if cfg.border_copies and pad:
            border = _border_mask(image.shape[-2:], pad, cfg.key_stride)
            patches = torch.cat([patches, _grid_patches(image, p, "reflect", cfg.key_stride)[border]])
        self.p, self.pad, self.mode = p, pad, mode
        a = 1 if cfg.aggregate == "center" else min(cfg.fold_size, p)
        self.a = a
        idx = _central_index(p, a)
        self.values = patches[:, idx].contiguous()  # [N, 3aa]
        self.patches = patches
        self.mean = self.basis = None
        if cfg.pca_dims and cfg.pca_dims < patches.shape[1]:
            # Statistics of the primary patches only: "auto" at the training size is then exactly "zero".
            self.mean = patches[: self.n_primary].mean(0)
            centred = patches - self.mean
            # Eigenvectors of the patch covariance, largest first ([3pp, m]).
            prim = centred[: self.n_primary].double()
            cov = prim.T @ prim / max(1, prim.shape[0] - 1)
            _, vecs = torch.linalg.eigh(cov)
            self.basis = vecs[:, -cfg.pca_dims :].flip(1).to(patches.dtype).contiguous()
            self.keys_proj = centred @ self.basis  # [N, m]
        else:
            self.keys_proj = patches
        self.key_sq = (self.keys_proj**2).sum(1)  # [N]
        self.patch_sq = (patches**2).sum(1) if self.basis is not None else self.key_sq  # [N], exact rerank
        self._indexes: dict[tuple[int | None, torch.device], CellIndex] = {}

    def index(self, n: int | None, cfg: PatchConfig) -> CellIndex:
        """The cells index over ``keys_proj[:n]`` (built on first use, cached per ``n``)."""
        if (n, self.keys_proj.device) not in self._indexes:
            self._indexes[(n, self.keys_proj.device)] = CellIndex(
                self.keys_proj[:n], cfg.search_cells, cfg.search_probes
            )
        return self._indexes[(n, self.keys_proj.device)]

    def to(self, device: torch.device) -> "_ScalePatches":
        for name in ("patches", "values", "mean", "basis", "keys_proj", "key_sq", "patch_sq"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, v.to(device))
        return self


def _grid_patches(image: torch.Tensor, p: int, mode: str, stride: int) -> torch.Tensor:
    """Every ``stride``-th ``p x p`` patch of ``image [1, 3, H, W]``, padded by ``p // 2`` with
    ``mode`` (``constant`` = zeros, or ``reflect``): ``[N, 3 p p]``, row-major over positions."""
    pad = p // 2
    padded = F.pad(image, (pad, pad, pad, pad), mode=mode) if pad else image
    cols = F.unfold(padded, p)  # [1, 3pp, H*W]
    h, w = image.shape[-2:]
    if stride > 1:
        grid = cols.view(1, -1, h, w)[:, :, ::stride, ::stride]
        cols = grid.reshape(1, grid.shape[1], -1)
    return cols[0].T.contiguous()


def _border_mask(size: tuple[int, int], pad: int, stride: int) -> torch.Tensor:
    """``[N]`` bool over the positions of :func:`_grid_patches`: True where the patch reaches into
    the padding (within ``pad`` px of a border), i.e. where zero and reflect padding differ."""
    h, w = size
    rows, cols = torch.arange(0, h, stride), torch.arange(0, w, stride)
    r = (rows < pad) | (rows >= h - pad)
    c = (cols < pad) | (cols >= w - pad)
    return (r[:, None] | c[None, :]).reshape(-1)


def _central_index(p: int, a: int) -> torch.Tensor:
    """Indices of the central ``a x a`` pixels (all channels) in an unfolded ``3 x p x p`` patch."""
    off = (p - a) // 2
    rows = torch.arange(off, off + a)
    pix = (rows[:, None] * p + rows[None, :]).reshape(-1)  # [aa] within one channel
    return torch.cat([c * p * p + pix for c in range(3)])


def posterior_mean_patches(
    queries: torch.Tensor,
    keys: torch.Tensor,
    key_sq: torch.Tensor,
    values: torch.Tensor,
    sqrt_abar: float,
    var: float,
    chunk_size: int,
    top_k: int = 0,
    rerank: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    index: CellIndex | None = None,
) -> torch.Tensor:
    """Softmax-weighted average of ``values`` for every query (the closed-form E[x0 | x_t] per patch).

    Args:
        queries: ``[M, d]`` noisy patches (already projected / centred like ``keys``).
        keys: ``[N, d]`` clean patches; ``key_sq``: ``[N]`` their squared norms.
        values: ``[N, v]`` what each patch votes for.
        sqrt_abar, var: ``sqrt(abar_t)`` and the noise variance of the queries.
        chunk_size: queries per block; at most ``chunk_size x N`` logits exist at once.
        top_k: if ``0 < top_k < N``, the softmax runs over each query's ``top_k`` largest logits only.
        rerank: with ``top_k``, ``(queries [M, D], patches [N, D], patch_sq [N])`` in full dimension:
            ``queries``/``keys`` above only pick the candidates, whose logits are recomputed from these.
        index: with ``top_k``, a :class:`CellIndex` over ``keys`` that shortlists the ``top_k``
            candidates approximately (nearest to ``q / sqrt_abar``) instead of scoring every key.
    Returns:
        ``[M, v]``: ``sum_i softmax_i(-||q - sqrt_abar k_i||^2 / (2 var)) values_i``.
    """
    # logits = (sqrt_abar q.k - abar |k|^2 / 2) / var: the exponent up to a per-query constant,
    # i.e. attention with queries [q, 1], keys [sqrt_abar k, -abar |k|^2 / 2] and scale 1 / var.
    dot_coef, sq_coef = sqrt_abar / var, -0.5 * sqrt_abar**2 / var  # logits = dot_coef q.k + sq_coef |k|^2
    bias = sq_coef * key_sq  # [N]
    keys_t = (keys * dot_coef).T.contiguous()  # [d, N]
    k = top_k if 0 < top_k < keys.shape[0] else 0
    # The largest logits are the keys nearest to q / sqrt_abar: what the cells index answers.
    shortlist = index.search(queries / sqrt_abar, k) if k and index is not None else None
    out = []
    buffer = None  # one [rows, N] block of logits for every block (models/shortlist.py says why)
    rows = block_rows(keys.shape[0], chunk_size, queries.device)
    for start in range(0, queries.shape[0], rows):
        q = queries[start : start + rows]
        if k:
            if shortlist is not None:
                idx = shortlist[start : start + rows]  # [rows, k]
                top = dot_coef * candidate_dots(keys, idx, q) + bias[idx]
            else:
                top, idx, buffer = top_scores(q, keys_t, bias, k, buffer)  # [rows, k]
            if rerank is not None:  # exact logits of the shortlisted patches
                q_full, patches, patch_sq = rerank
                dots = candidate_dots(patches, idx, q_full[start : start + rows])
                top = dot_coef * dots + sq_coef * patch_sq[idx]
            weights = torch.softmax(top, 1)  # [rows, k]
            picked = values.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)  # [rows, k, v]
            out.append(torch.bmm(weights[:, None], picked)[:, 0])
        elif q.is_cuda:  # fused flash/memory-efficient kernels on the GPU
            q_aug = torch.cat([q, q.new_ones(q.shape[0], 1)], 1)[None]
            k_aug = torch.cat([keys_t.T, bias[:, None]], 1)[None]
            out.append(F.scaled_dot_product_attention(q_aug, k_aug, values[None], scale=1.0)[0])
        else:  # on the CPU one BLAS call, an in-place softmax and a second BLAS call are ~2x faster than SDPA
            logits, buffer = score_block(q, keys_t, bias, buffer)  # [rows, N]
            weights = logits.sub_(logits.amax(1, keepdim=True)).exp_()  # in place: no second [rows, N]
            out.append((weights @ values) / weights.sum(1, keepdim=True))
    return torch.cat(out)


class PatchDenoiser(nn.Module):
    """``(x_t [B, 3, H, W] in ~[-1, 1], t [B] int64) -> eps [B, 3, H, W]`` with no trainable weights.

    Holds the training image (``image``, ``[1, 3, H, W]`` in [-1, 1], the only state saved in a
    checkpoint) and the noise schedule (``alphas_cumprod``, ``[T]``, float64, not saved: it comes
    from the checkpoint's diffusion section). The per-scale patch sets are built on first use and
    cached per device.
    """

    def __init__(self, cfg: PatchConfig, image: torch.Tensor, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        if image.dim() == 3:
            image = image[None]
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"the training image must be [3, H, W] or [1, 3, H, W], got {tuple(image.shape)}")
        cfg.check_image(tuple(image.shape[-2:]))
        self.cfg = cfg
        self.register_buffer("image", image.float().contiguous())
        self.register_buffer("alphas_cumprod", alphas_cumprod.to(torch.float64), persistent=False)
        self.train_sizes = cfg.pyramid_sizes(tuple(image.shape[-2:]))
        self._scales: dict[str, list[_ScalePatches]] = {}

    def build_index(self) -> list[_ScalePatches]:
        """Build (or fetch) the patch sets of every scale on the image's device."""
        key = str(self.image.device)
        if key not in self._scales:
            self.check_memory()
            with torch.no_grad():
                self._scales = {
                    key: [
                        _ScalePatches(_down(self.image, s), self.cfg.patch_size_at(k), self.cfg)
                        for k, s in enumerate(self.train_sizes)
                    ]
                }
        return self._scales[key]

    def logits_bytes(self) -> int:
        """Peak bytes of one block: ``chunk_size x (patches at the finest scale) x 4`` logits, plus with
        ``top_k`` the ``chunk_size x k`` gathered candidate patches (``3 p^2`` floats each)."""
        h, w = self.train_sizes[0]
        keys = math.ceil(h / self.cfg.key_stride) * math.ceil(w / self.cfg.key_stride)
        p = max((self.cfg.patch_size,) + self.cfg.sizes())
        if self.cfg.border_copies:  # plus the reflect-padded border patches
            keys += int(_border_mask((h, w), self.cfg.patch_size_at(0) // 2, self.cfg.key_stride).sum())
        gathered = min(self.cfg.top_k, keys) * 3 * p * p
        return self.cfg.chunk_size * (keys + gathered) * 4

    def check_memory(self, available_bytes: int | None = None) -> None:
        """Refuse a ``chunk_size`` whose logits would take more than half the memory."""
        if available_bytes is None:
            if self.image.is_cuda:
                available_bytes = torch.cuda.mem_get_info(self.image.device)[0]
            else:
                available_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        need = self.logits_bytes()
        if need > available_bytes // 2:
            raise ValueError(
                f"model.chunk_size: {self.cfg.chunk_size} queries x {need // (4 * self.cfg.chunk_size)} "
                f"floats needs {need / 2**30:.1f} GiB per block, more than half of the "
                f"{available_bytes / 2**30:.1f} GiB available; lower model.chunk_size"
            )

    def _posterior(
        self, x: torch.Tensor, sp: _ScalePatches, sqrt_abar: float, var: float, extra: bool = True
    ) -> torch.Tensor:
        """Closed-form x0 estimate at one scale: ``x [B, 3, h, w]`` noisy -> ``[B, 3, h, w]``;
        ``extra=False`` leaves out the appended reflect-padded border patches."""
        b, _, h, w = x.shape
        n = None if extra else sp.n_primary
        p, a, s = sp.p, sp.a, self.cfg.query_stride
        xp = F.pad(x, (sp.pad,) * 4, mode=sp.mode) if sp.pad else x
        q = F.unfold(xp, p, stride=s)  # [B, 3pp, nh*nw]
        nh, nw = (h - 1) // s + 1, (w - 1) // s + 1
        q = q.transpose(1, 2).reshape(b * nh * nw, -1)
        rerank = None
        if sp.basis is not None:
            if self.cfg.top_k:  # the projection only shortlists; the k weights use exact distances
                rerank = (q, sp.patches[:n], sp.patch_sq[:n])
            q = (q - sqrt_abar * sp.mean) @ sp.basis  # centre like the keys, project
        est = posterior_mean_patches(
            q,
            sp.keys_proj[:n],
            sp.key_sq[:n],
            sp.values[:n],
            sqrt_abar,
            var,
            self.cfg.chunk_size,
            self.cfg.top_k,
            rerank,
            sp.index(n, self.cfg) if self.cfg.search_cells and self.cfg.top_k else None,
        )
        if a == 1:
            return est.reshape(b, h, w, 3).permute(0, 3, 1, 2)
        # Fold the a x a votes back with a Gaussian window, normalised by the folded window.
        r = torch.arange(a, device=x.device, dtype=x.dtype) - (a - 1) / 2
        g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * self.cfg.fold_sigma**2)).reshape(-1)
        win = g.repeat(3)  # [3aa]
        votes = (est * win).reshape(b, nh * nw, -1).transpose(1, 2)  # [B, 3aa, nh*nw]
        pad = a // 2
        canvas = ((nh - 1) * s + a, (nw - 1) * s + a)  # window centres at pad + i*s
        num = F.fold(votes, canvas, a, stride=s)
        den = F.fold(win[None, :, None].expand(1, -1, nh * nw), canvas, a, stride=s)
        return (num / den)[..., pad : pad + h, pad : pad + w]

    def denoise(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        """E[x0 | x_t] estimate at integer step ``t``: ``[B, 3, H, W]`` -> ``[B, 3, H, W]``."""
        scales = self.build_index()
        abar = float(self.alphas_cumprod[t])
        sqrt_abar, var = math.sqrt(abar), 1.0 - abar
        size = tuple(x_t.shape[-2:])
        sizes = self.cfg.pyramid_sizes(size)
        if len(sizes) != len(scales):  # a sample of another size: same number of scales as the training image
            sizes = [
                (max(1, round(size[0] * self.cfg.scale_ratio**k)), max(1, round(size[1] * self.cfg.scale_ratio**k)))
                for k in range(len(scales))
            ]
        fine_on = t <= self.cfg.fine_start * (len(self.alphas_cumprod) - 1)
        h, w = self.image.shape[-2:]
        extra = self.cfg.padding == "both" or (self.cfg.padding == "auto" and (size[0] > h or size[1] > w))
        xhat = None
        for k in range(len(scales) - 1, -1, -1):
            hk, wk = sizes[k]
            if xhat is not None and not fine_on:
                xhat = _up(xhat, (hk, wk))
                continue
            xk = _down(x_t, (hk, wk))
            # Area-averaging s^2 independent noise values divides their variance by s^2.
            ratio = (hk * wk) / (size[0] * size[1]) if self.cfg.temperature == "exact" else 1.0
            est = self._posterior(xk, scales[k], sqrt_abar, var * ratio, extra)
            if xhat is not None:
                coarse = sizes[k + 1]
                est = est - _up(_down(est, coarse), (hk, wk)) + _up(xhat, (hk, wk))
            xhat = est
        return xhat

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps consistent with the closed-form x0: ``(x_t - sqrt(abar) x0) / sqrt(1 - abar)``."""
        if t.numel() and bool((t != t.reshape(-1)[0]).any()):
            return torch.cat([self.forward(x_t[i : i + 1], t[i : i + 1]) for i in range(x_t.shape[0])])
        step = int(t.reshape(-1)[0])
        with torch.autocast(x_t.device.type, enabled=False):  # softmax temperatures down to 1e-4 need fp32
            x = x_t.float()
            x0 = self.denoise(x, step)
            abar = float(self.alphas_cumprod[step])
            return (x - abar**0.5 * x0) / (1.0 - abar) ** 0.5
