"""A start for samples wider or narrower than the training image whose structures keep their size
(``sample.init: tile``, what ``auto`` uses at any size but the training size).

Why
---
The ``layout`` start (:mod:`.layout_start`) stretches the image's low-pass to the output size: a
2x-wide sample is one volcano twice as wide, an arch twice as long. The ``native`` start
(:mod:`.native_layout`) draws a layout at the output size by nearest-patch synthesis on a 12 px
copy of the image, which keeps the sizes but loses the image's proportions (a lawn grows over the
house) and its coherence; patch SWD, which penalises seams and wrong proportions, rose with it.
Measured on Places50 1-8 at 128 px, 2x wide: patch SWD 0.0268 (native) -> 0.0158 (tile).

What
----
The training image ``[1, 3, h, w]`` is laid out at the output size ``(H, W)`` before the layout's
low-pass (:func:`~.layout_start.layout_of`), one arrangement per sample:

* **columns**: wider: the image tiled side by side with a random phase (``W = 2w``: two copies,
  cut at a random column, so two volcanoes of the image's size, in other places in every sample);
  as wide (the training size, ``sample.init: tile`` only: ``auto`` uses ``layout`` there): with
  ``sample.tile_cols: swap`` (both configs' default) the image with two adjacent inner strips
  swapped where its columns agree (:func:`swap_arrangements`), so each sample's layout differs while
  objects keep their size and the image's edges stay the canvas's (Places50 1-25, 128 px: pixel
  diversity 0.22 -> 0.30 for the patch model, 0.28 -> 0.37 for the UNet, patch SWD +17-18 %; three
  seams); with ``roll`` the image rolled sideways by a random phase (with ``init_t`` 0.5: 0.19 ->
  0.42 and 0.30 -> 0.49, mostly a translation, one seam where the image's right edge meets its left,
  an object at the phase cut by the canvas's edges); narrower: a crop at a random offset.
  Overlapping the wider canvas's copies and cutting between them where they agree (image
  quilting's minimum-error cut) was measured worse: Places50 1-25 at 2x wide, patch SWD 0.0159 ->
  0.0203, and salient objects (a red slide, a golfer) dropped out of the samples;
  mirrored copies (no seam at all) too: 0.0159 -> 0.0202, lower on 3 of 25;
* **rows**: taller: by default (``sample.tile_rows: stretch``) the image's rows resampled to ``H``
  (the scene stretched vertically, as the ``layout`` start does; tiling rows stacks a second horizon
  and a second sky, and extending the top and bottom rows drew flat bands: both measured worse);
  with ``tile_rows: smooth`` the extra rows go to the image's smooth rows (:func:`taller_rows`), so
  a tree or a mountain keeps its height under more sky. That canvas holds more sky than the image,
  so the sample stage gives the patch-distribution matching the same proportions
  (:func:`row_heights` as its ``row_mass``), or the matching would break the extra sky into
  fragments. Places50 1-25 at 128 px, 2x tall, ``configs/patch.yaml``: patch SWD against the
  image 0.0152 -> 0.0248 and sharpness 0.96 -> 0.89 (both compare with the image's proportions,
  which the sample no longer has), by eye natural-size trees, castles and peaks on some images and
  floating slabs of mountain in the sky on others; an option, not the default.
  Shorter: a crop at a random offset.

**The coarse band pinned** (``sample.layout_pin``; 0 = off): from the noised layout alone a patch
model redraws the large regions as freely as the detail, and its coarse band drifts: sky holes in
a field or in rock, slabs of mountain or pieces of tree in the sky, on a taller canvas the lava
glow twice. After every step down to ``layout_pin_t`` the whole canvas's coarse band (down by
``layout_pin``) is replaced by the noised layout's (ILVR, SinDiffusion eq. 7), so the large regions
stay where the layout puts them (side by side copies, the swapped strips, the stretched rows) and
only detail is drawn. First for taller canvases (then ``rows_pin``), at every size since: the same
holes and slabs appear at 1x to 2x wide. The price: less variety between samples (the layout is
the arrangement's, not redrawn), at 1x pixel diversity 0.30 -> 0.24 on Places50 1-25; and on a
taller canvas an object the stretched rows hold at twice its height is drawn once, stretched,
rather than twice. ``configs/patch.yaml`` sets it (docs/results/any-size.md, "The coarse band
pinned at every size").

The low-pass (area down by ``init_factor``, bilinear up) blurs each seam where the image's right
edge meets its left edge, and the denoiser, started at ``init_t`` from this layout plus noise,
redraws it: at ``init_t`` the coarse scales still see noise enough to join the two sides. Where the
two edges differ a lot (a diagonal cliff, a tree cut by the border) a vertical seam can remain.

**Seams redrawn from more noise** (``sample.seam_t``; 0 = off): a band of columns around each
seam (:func:`seam_mask`) starts from ``seam_t`` instead, while the rest of the canvas is held at
the layout noised to each step (SinDiffusion's eq. 6, as outpainting holds its known region) until
the loop reaches ``init_t``; from there all of it is denoised together as before. The band gets
enough noise for the model to draw a transition between two unrelated edges with both sides as
context; the rest keeps the layout's freedom. Costs the steps from ``seam_t`` to ``init_t`` on
the whole canvas. Where an object touches the image's edge the band may draw it on upwards into the
sky (a column of trees, a spire over a ridge); ``sample.seam_pin`` holds the band's coarse band to
the layout's meanwhile (ILVR), so only detail is redrawn (capped by :func:`seam_pin_factor` for
small outputs). ``params.yaml`` (the UNet) sets both, ``configs/patch.yaml`` neither
(docs/results/any-size.md, "The seam redraw with its pin").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..diffusion.gaussian import ModelOutput
from ..diffusion.loop import SamplingContext
from .ilvr import LowPass
from .layout_start import LayoutStartHook, layout_of

__all__ = [
    "TiledLayoutStartHook",
    "has_seams",
    "row_heights",
    "seam_columns",
    "seam_mask",
    "seam_pin_factor",
    "swap_arrangements",
    "swapped_columns",
    "taller_rows",
    "tiled_canvas",
    "tiled_columns",
]


def taller_rows(image: torch.Tensor, height: int, mode: str = "stretch") -> torch.Tensor:
    """The source row of each of the ``height`` rows of a canvas taller than ``image [B, C, h, w]``
    (``height >= h``): ``[height]`` long, ascending, every source row used at least once.

    ``stretch``: the rows resampled evenly (every region ``height / h`` times as high). ``smooth``:
    the extra rows go to the image's smooth rows, those whose low-pass changes little along the row
    and to the next (a clear sky, a lawn, sand), and few to the rows that cross objects and edges,
    so a 2x-tall sample of a landscape gets more sky and more foreground while the mountains, a
    tree or a house keep their height. A row's change ``e`` is the mean absolute difference of its
    3x3 box low-pass (all channels) to its right-hand and lower neighbours, the largest within
    ``h / 16`` rows; its weight ``1 / (e + mean(e) / 4)``; each source row gets
    ``1 + (height - h) * weight / sum(weight)`` output rows. Rows of one uniform texture all get the
    same change, so the even stretch.
    """
    h = image.shape[-2]
    dev = image.device
    if mode not in ("stretch", "smooth"):
        raise ValueError(f"rows mode must be 'smooth' or 'stretch', got {mode!r}")
    if height < h:
        raise ValueError(f"height {height} is smaller than the image's {h} rows")
    if mode == "stretch" or height == h:
        # nearest rows of a vertical stretch (the low-pass that follows smooths them)
        return ((torch.arange(height, device=dev) + 0.5) * h / height).long().clamp_max(h - 1)
    counts = row_heights(image, height)
    ends = counts.cumsum(0)
    centres = (torch.arange(height, device=dev, dtype=ends.dtype) + 0.5) * (ends[-1] / height)
    return torch.searchsorted(ends, centres).clamp_max(h - 1)


def row_heights(image: torch.Tensor, height: int) -> torch.Tensor:
    """How many of ``height`` output rows each of ``image [B, C, h, w]``'s rows gets in the
    ``smooth`` arrangement (:func:`taller_rows`): ``[h]`` float, each >= 1, summing to ``height``.
    Only the first image of the batch is read."""
    h = image.shape[-2]
    if h < 2:
        return torch.full((h,), float(height), device=image.device)
    low = F.avg_pool2d(image[:1].float(), 3, stride=1, padding=1, count_include_pad=False)
    down = (low[:, :, 1:] - low[:, :, :-1]).abs().mean(dim=(0, 1, 3))  # [h - 1], change to the next row
    change = (low[..., 1:] - low[..., :-1]).abs().mean(dim=(0, 1, 3))  # [h], change along the row
    change[1:] += down
    change[:-1] += down
    reach = max(1, h // 16)
    # The largest change nearby: an object's interior rows count as part of the object.
    change = F.max_pool1d(change[None, None], 2 * reach + 1, stride=1, padding=reach)[0, 0]
    weight = 1.0 / (change + 0.25 * change.mean() + 1e-8)
    return 1.0 + (height - h) * weight / weight.sum()


def tiled_canvas(
    image: torch.Tensor, size: tuple[int, int], shift: tuple[float, float], rows_mode: str = "stretch"
) -> torch.Tensor:
    """``image [B, C, h, w]`` laid out on ``size = (H, W)`` (module docstring): ``[B, C, H, W]``.

    ``shift = (u, v)`` in [0, 1): the phase of the tiled (or, at the training size, rolled) columns,
    or the offset of a narrower crop, as a fraction of the free range; and the offset of a shorter
    crop of rows.
    """
    h, w = image.shape[-2:]
    hc, wc = size
    u, v = shift
    if not (0 <= u < 1 and 0 <= v < 1):
        raise ValueError(f"shift must lie in [0, 1), got {shift}")
    dev = image.device
    cols = tiled_columns((h, w), size, u).to(dev)
    if hc >= h:
        rows = taller_rows(image, hc, rows_mode)
    else:
        rows = torch.arange(hc, device=dev) + int(v * (h - hc + 1))
    return image[:, :, rows][:, :, :, cols]


def has_seams(image_size: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether a ``size = (H, W)`` canvas of an ``image_size = (h, w)`` image is tiled or rolled
    (:func:`tiled_columns`), so that its columns may wrap from the image's right edge to its left."""
    (h, w), (hc, wc) = image_size, size
    # Rolled at the training size only: a taller canvas of the image's width keeps its columns (its
    # rows are stretched; a roll there was not measured).
    return wc > w or (wc == w and hc == h)


def tiled_columns(image_size: tuple[int, int], size: tuple[int, int], u: float) -> torch.Tensor:
    """The source column of each of a ``size = (H, W)`` canvas's ``W`` columns (``[W]`` long) for an
    ``image_size = (h, w)`` image: tiled or rolled with phase ``u`` in [0, 1) of the width
    (:func:`has_seams`), else a crop at offset ``u`` of the free range."""
    w, wc = image_size[1], size[1]
    phase = int(u * w) if has_seams(image_size, size) else int(u * (w - wc + 1))
    return (phase + torch.arange(wc)) % w


#: ``swap_arrangements``: the swapped strips' least width and the outer strips' least width, as fractions
#: of the image's width, and the fraction of the cheapest arrangements one is drawn from by default.
SWAP_MIN_STRIP, SWAP_MIN_EDGE, SWAP_POOL = 0.125, 0.125, 0.05
#: at most this many candidate cut columns (evenly spaced) are searched, so that a wide image costs
#: about as much as a 128 px one (128^3 / 6 arrangements)
SWAP_MAX_CUTS = 128


def swap_arrangements(image: torch.Tensor, pool: float = SWAP_POOL) -> torch.Tensor:
    """The cheapest ways to swap two adjacent inner strips of ``image [B, C, h, w]``'s columns,
    ``A B C D -> A C B D`` (``sample.tile_cols: swap``): ``[n, 3]`` long, the cuts ``(a, b, c)``
    (``B = [a, b)``, ``C = [b, c)``), cheapest first; ``n = 0`` for an image too narrow to cut.

    An arrangement costs the mean squared difference (image 3x3 box-blurred) of the two columns
    that meet at each new junction, ``A|C``, ``C|B`` and ``B|D``, so the cuts fall where the
    image's columns agree (sky next to sky, brush next to brush). Kept: the cheapest ``pool`` (in
    (0, 1]; ``sample.swap_pool``) of all arrangements with ``B`` and ``C`` at least
    :data:`SWAP_MIN_STRIP` and ``A`` and ``D`` at least :data:`SWAP_MIN_EDGE` of the width wide.
    Only the first image of the batch is read.
    """
    if not 0 < pool <= 1:
        raise ValueError(f"pool must lie in (0, 1], got {pool}")
    w = int(image.shape[-1])
    low = F.avg_pool2d(image[:1].float().cpu(), 3, stride=1, padding=1, count_include_pad=False)[0]
    cols = low.permute(2, 0, 1).reshape(w, -1)  # [w, C*h]
    diff = torch.cdist(cols, cols).square() / cols.shape[1]  # [w, w]: column i next to column j
    edge, strip = max(1, round(SWAP_MIN_EDGE * w)), max(1, round(SWAP_MIN_STRIP * w))
    cuts = torch.arange(1, w, max(1, -(-w // SWAP_MAX_CUTS)))
    a, b, c = torch.meshgrid(cuts, cuts, cuts, indexing="ij")
    ok = (a >= edge) & (b - a >= strip) & (c - b >= strip) & (w - c >= edge)
    a, b, c = a[ok], b[ok], c[ok]
    if a.numel() == 0:
        return torch.zeros((0, 3), dtype=torch.long)
    # A|C joins column a-1 to b, C|B joins c-1 to a, B|D joins b-1 to c.
    cost = diff[a - 1, b] + diff[c - 1, a] + diff[b - 1, c]
    keep = torch.topk(cost, max(1, int(pool * cost.numel())), largest=False).indices  # ascending
    return torch.stack([a[keep], b[keep], c[keep]], dim=1)


def swapped_columns(width: int, arrangements: torch.Tensor, u: float) -> torch.Tensor:
    """The source column of each of ``width`` columns (``[width]`` long) with the strips of one of
    ``arrangements [n, 3]`` (:func:`swap_arrangements`) swapped, drawn with ``u`` in [0, 1); the
    columns unchanged where ``n = 0``. The canvas keeps the image's own left and right edges (a
    roll cuts whatever object lies at its phase with the canvas's edges) and uses every column
    once, so objects keep their size and the image its proportions; what changes is where the
    strips' objects stand."""
    idx = torch.arange(width)
    n = int(arrangements.shape[0])
    if n == 0:
        return idx
    a, b, c = (int(v) for v in arrangements[min(n - 1, int(u * n))])
    return torch.cat([idx[:a], idx[b:c], idx[a:b], idx[c:]])


def seam_columns(cols: torch.Tensor) -> list[int]:
    """The seams of a canvas with source columns ``cols [W]`` (:func:`tiled_columns`): each output
    column that does not follow its left neighbour in the image (the image's right edge meeting
    its left), i.e. the first column right of each cut; ascending, empty without a seam."""
    return (torch.nonzero(cols[1:] != cols[:-1] + 1).flatten() + 1).tolist()


def seam_mask(cols: torch.Tensor, height: int, width: float) -> torch.Tensor:
    """The band around each seam (:func:`seam_columns`) of a canvas with source columns ``cols [W]``:
    ``[1, 1, height, W]`` float, 1 in the ``round(width)`` columns centred on each seam, 0
    elsewhere; all 0 without a seam."""
    wc = int(cols.numel())
    band = torch.zeros(wc)
    half = max(1, int(round(width))) / 2
    centres = torch.arange(wc) + 0.5
    for j in seam_columns(cols):
        band[(centres - j).abs() <= half] = 1.0
    return band.expand(1, 1, height, wc).clone()


def seam_pin_factor(pin: int, size: tuple[int, int]) -> int:
    """``sample.seam_pin`` for an output of ``size`` (H, W): at most a quarter of the short side, so
    the held coarse band is at least 4 px (:class:`~.ilvr.LowPass`'s minimum) and a default pin also
    serves small outputs; 0 (no pin) where that leaves a factor below 2."""
    pin = min(int(pin), min(size) // 4)
    return pin if pin >= 2 else 0


class TiledLayoutStartHook(LayoutStartHook):
    """The ``layout`` start with the training image tiled to the output size (:func:`tiled_canvas`,
    one random arrangement per sample) before its low-pass, instead of stretched.

    ``image``: the processed training image ``[1, 3, h, w]`` in [-1, 1]; ``factor``: the low-pass
    (``sample.init_factor``); ``rows``: how a taller canvas's rows are laid out (:func:`taller_rows`,
    ``sample.tile_rows``). The arrangements come from the loop's per-sample generators, so a
    sample does not depend on its batch.

    ``seam_width`` (px, > 0) and ``join_t`` (a step): redraw the seams from more noise (module
    docstring): the loop starts above ``join_t``, and after every step to ``t_prev >= join_t``
    everything outside the band of ``seam_width`` columns around each seam (:func:`seam_mask`) is
    replaced by the layout noised to ``t_prev``. Without either, the plain tile start.
    ``seam_pin`` (a factor >= 2; 0 = off): at those steps the band's coarse band, the sample down by
    ``seam_pin``, is also replaced by the noised layout's (ILVR, SinDiffusion eq. 7), so the band
    redraws detail within the layout's large regions instead of drawing new objects into its sky.
    ``cols``: the training size's layout (``sample.tile_cols``): ``roll`` or ``swap``
    (:func:`swap_arrangements`); ``arrangements``: the swap's arrangements of this image when a
    previous hook (an earlier batch of the same draw) already searched them, else searched at the
    first :meth:`start` that needs them, the cheapest ``swap_pool`` of all (``sample.swap_pool``).
    ``layout_pin`` (a factor >= 2; 0 = off) and ``pin_until`` (a step): after every step to
    ``t_prev >= pin_until`` the whole canvas's coarse band is replaced by the noised layout's
    (module docstring).
    """

    def __init__(
        self,
        image: torch.Tensor,
        factor: int,
        rows: str = "stretch",
        seam_width: float = 0.0,
        join_t: int | None = None,
        seam_pin: int = 0,
        cols: str = "roll",
        arrangements: torch.Tensor | None = None,
        layout_pin: int = 0,
        pin_until: int | None = None,
        swap_pool: float = SWAP_POOL,
    ) -> None:
        super().__init__(image)
        if cols not in ("roll", "swap"):
            raise ValueError(f"cols must be 'roll' or 'swap', got {cols!r}")
        self.image, self.factor, self.rows, self.cols = image.float(), factor, rows, cols
        self.arrangements = arrangements  # cols: swap, swap_arrangements of the image (searched once)
        self.swap_pool = swap_pool
        self.seam_width, self.join_t = seam_width, join_t
        self.pin = LowPass(seam_pin) if seam_pin else None
        self.layout_pin = LowPass(layout_pin) if layout_pin and pin_until is not None else None
        self.pin_until = pin_until
        self.keep: torch.Tensor | None = None  # [B, 1, H, W]: 1 = held at the noised layout
        #: after :meth:`start`: each sample's seams (:func:`seam_columns`), what ``samples.json`` records
        self.seams: list[list[int]] = []

    def start(self, x: torch.Tensor, t: int, ctx: SamplingContext) -> torch.Tensor:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        # Uniform numbers from the per-sample generators (which draw normals): the normal CDF.
        z = ctx.randn_like(torch.empty((x.shape[0], 2)))
        shift = (0.5 * (1 + torch.erf(z / 2**0.5))).clamp(0, 1 - 1e-6)
        image = self.image.to(x.device)
        if self.cols == "swap" and size == tuple(image.shape[-2:]):
            # the training size: two strips swapped instead of a roll
            if self.arrangements is None:  # the same for every batch: handed on to the next batch's hook
                self.arrangements = swap_arrangements(self.image, self.swap_pool)
            cols = [swapped_columns(size[1], self.arrangements, float(u)) for u, _ in shift]
            tiled = torch.cat([image[:, :, :, c.to(x.device)] for c in cols])
        else:
            tiled = torch.cat([tiled_canvas(image, size, (float(u), float(v)), self.rows) for u, v in shift])
            cols = [tiled_columns((int(image.shape[-2]), int(image.shape[-1])), size, float(u)) for u, _ in shift]
        self.layout = layout_of(tiled, self.factor, size)
        self.seams = [seam_columns(c) for c in cols]
        if self.seam_width > 0 and self.join_t is not None and t > self.join_t:
            band = torch.cat([seam_mask(c, size[0], self.seam_width) for c in cols])
            self.keep = (1.0 - band).to(x.device, x.dtype)
        return super().start(x, t, ctx)

    def after_step(self, x_prev: torch.Tensor, t_prev: int, out: ModelOutput, ctx: SamplingContext) -> torch.Tensor:
        # What acts at this step: the layout pin down to pin_until, the seams' hold down to join_t.
        layout_pin = self.layout_pin if self.pin_until is not None and t_prev >= self.pin_until else None
        keep = self.keep if self.join_t is not None and t_prev >= self.join_t else None
        if layout_pin is None and keep is None:
            return x_prev
        abar = ctx.diffusion.abar(t_prev)
        held = abar**0.5 * self.layout.to(x_prev.device, x_prev.dtype) + (1 - abar) ** 0.5 * ctx.randn_like(x_prev)
        if layout_pin is not None:  # the whole canvas's coarse band (eq. 7)
            x_prev = x_prev + layout_pin(held - x_prev)
        if keep is None:
            return x_prev
        if self.pin is not None:  # eq. 7: phi(held) + x - phi(x); outside the band replaced below anyway
            x_prev = x_prev + self.pin(held - x_prev)
        return x_prev + keep * (held - x_prev)
