"""``sindiffusion sample``: N random samples at any size + a grid image."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..applications.layout_start import LayoutStartHook, layout_of
from ..applications.native_layout import NativeLayoutStartHook
from ..applications.nearest_finish import NearestPatchFinish
from ..applications.patch_matching import PatchMatchFinish
from ..applications.tiled_layout import TiledLayoutStartHook, has_seams, row_heights, seam_pin_factor
from ..artifacts import sha256_file, write_json, writing_dir
from ..checkpoint import check_checkpoint_image
from ..config import IMAGE_FREE_SAMPLE, Params, SampleConfig
from ..data.io import image_to_tensor, load_image, make_grid, save_grid, save_image, tensor_to_image
from ..diffusion import Sampler, SamplingHook, build_sampler, step_of_fraction
from ..diffusion.x0 import x0_clip_of
from ..generate import ModelBundle, generate, load_bundle, output_size
from ..progress import make_progress
from ..runtime import describe, resolve_device
from .common import image_paths, model_io, tracked


def run(
    params: Params,
    image: str,
    checkpoint: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
    model_uri: str | None = None,
) -> dict:
    """Draw ``sample.num_samples`` samples into ``out_dir`` (default ``results/<image>/samples``).

    The model: ``checkpoint`` (default ``results/<image>/train/model.pt``) or the MLflow model
    ``model_uri`` (``models:/NAME@ALIAS``, ``runs:/RUN_ID/NAME``, ...; :mod:`sindiffusion.logged_model`).
    A user's ``out_dir`` that is not empty and not written by sindiffusion is refused unless
    ``force`` (:mod:`sindiffusion.outdir`); the default folder is the project's own.
    """
    cfg = params.section("sample")
    paths = image_paths(params, image)
    source, out, force = model_io(params, paths, checkpoint, out_dir, paths.samples, force, model_uri)
    ckpt_path = source.path
    device = resolve_device(cfg.device)
    guard = params.section("preprocess")
    prepared = prepare(cfg, ckpt_path, paths.processed, device, None if guard.allow_large else guard.max_pixels)
    bundle, size = prepared.bundle, prepared.size
    for warning in check_checkpoint_image(bundle.checkpoint, source.label, image, paths.processed, strict=False):
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    print(f"sample: {describe(cfg.precision, device)}", file=sys.stderr, flush=True)
    note = f"Samples and timings are still written to {out}."
    with tracked("sample", image, params, device, note, {"checkpoint": source.label}) as tracker:
        samples, timings = draw(cfg, prepared, "sample", progress)
        with writing_dir(out, force) as tmp:
            files = []
            for i, x in enumerate(samples):
                name = f"sample_{i:03d}.png"
                save_image(x, tmp / name)
                files.append(name)
            save_grid(samples, tmp / "grid.png")
            meta = {
                "image": image,
                "checkpoint": source.label,
                "checkpoint_sha256": sha256_file(ckpt_path),
                "checkpoint_step": int(bundle.checkpoint["step"]),
                "size": list(size),
                "files": files,
                "device": str(device),
                **dataclasses.asdict(cfg),
                "start": prepared.start,
                "seams": prepared.seams(),
                "seam_redraw": prepared.seam_redraw,
                "layout_pinned": prepared.layout_pin,
                **timings,
            }
            write_json(tmp / "samples.json", meta)
        tracker.log_metrics(timings)
        grid = tensor_to_image(make_grid(samples))
        tracker.log_image(grid, key="samples_grid")
        tracker.log_image(grid, key="samples_grid", step=meta["checkpoint_step"], parent=True)
        for i, x in enumerate(samples[:16]):
            tracker.log_image(tensor_to_image(x), key="sample", step=i)
        tracker.log_artifact(out / "grid.png")
    return meta


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Everything :func:`draw` needs besides the ``sample`` section: the model, the output size
    ``(H, W)``, the sampler and where the samples start: pure noise at T (``hooks_for`` and
    ``t_start`` None) or, with ``sample.init: layout/native/auto``, a layout hook from ``t_start``. Built by
    :func:`prepare` only, so every caller samples a checkpoint the same way."""

    bundle: ModelBundle
    size: tuple[int, int]
    sampler: Sampler
    hooks_for: Callable[[int, int], Sequence[SamplingHook]] | None = None
    t_start: int | None = None
    start: str = "noise"
    """The start used (``sample.init`` with ``auto`` resolved): ``noise``, ``layout``, ``tile`` or ``native``."""
    tile_starts: list[TiledLayoutStartHook] = dataclasses.field(default_factory=list, compare=False)
    """With the ``tile`` start: its hooks, one per batch, as :func:`draw` built them (in sample order)."""
    seam_redraw: dict[str, float] | None = None
    """Where the seams' band is redrawn from more noise: ``{"seam_t", "seam_width_px", "seam_pin"}`` as
    used (``seam_pin`` after :func:`seam_pin_factor`); None where it is not (no seams, or off)."""
    layout_pin: int = 0
    """``sample.layout_pin`` as used on this size (capped like ``seam_pin``); 0 where the start is not
    ``tile``, it is off, or ``layout_pin_t`` leaves it no step."""

    def seams(self) -> list[list[int]] | None:
        """Each sample of the last :func:`draw`'s seams, the first column right of each place where
        the tiled image's right edge meets its left (``tile`` start; else None). Recorded in
        ``samples.json`` so that a seam can be found and scored (``sindiffusion seam-jump``)."""
        return [cols for hook in self.tile_starts for cols in hook.seams] if self.start == "tile" else None


def prepare(
    cfg: SampleConfig, checkpoint: Path, processed: Path, device: torch.device, max_pixels: int | None = None
) -> Prepared:
    """Load ``checkpoint`` and set up the ``sample`` section's sampling of it: the output size, the
    sampler and the start (:meth:`SampleConfig.start_kind`). ``layout`` starts each sample from the
    processed training image ``processed`` (area-down by ``init_factor``, stretched to the output
    size) noised to ``init_t * T``; ``tile`` from the image tiled to the output size
    (:mod:`sindiffusion.applications.tiled_layout`; a taller canvas's rows as ``sample.tile_rows``
    says), low-passed and noised the same way; ``native``
    from a layout synthesised at the output size from the image's coarse patches
    (:mod:`sindiffusion.applications.native_layout`), noised the same way. A
    missing file is a ValueError naming it (exit 2), raised here so that callers fail before
    anything is tracked or written. ``sample.finish: nearest`` adds the sharp last step
    (:mod:`sindiffusion.applications.nearest_finish`) after any start. ``max_pixels``: refuse a
    larger output (``preprocess.max_pixels``, the same guard as for the input files)."""
    # The file check comes before the (slow) model load; with neither file present the user is
    # told the first step to run, preprocess.
    uses_image = [f"sample.{k}={getattr(cfg, k)}" for k, off in IMAGE_FREE_SAMPLE.items() if getattr(cfg, k) != off]
    if uses_image and not processed.is_file():
        *first, last = [f"sample.{k}={off}" for k, off in IMAGE_FREE_SAMPLE.items()]
        raise ValueError(
            f"{processed}: {' and '.join(uses_image)} starts from this processed training image, which is missing; "
            f"run `sindiffusion preprocess` for the image, or set {', '.join(first)} and {last}"
        )
    bundle = load_bundle(checkpoint, device, use_ema=cfg.use_ema, precision=cfg.precision)
    size = output_size(bundle.train_size, cfg.height, cfg.width, cfg.scale_h, cfg.scale_w)
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise ValueError(
            f"sample size {size[0]}x{size[1]} ({size[0] * size[1]} pixels) is larger than preprocess.max_pixels "
            f"({max_pixels}); lower sample.height/width or sample.scale_h/scale_w, or set preprocess.allow_large: true"
        )
    sampler = build_sampler(cfg, bundle.diffusion)
    start = cfg.start_kind(size, bundle.train_size)
    image = image_to_tensor(load_image(processed))[None] if uses_image else None
    finish: list[SamplingHook] = []
    # A taller tile canvas that repeats the image's smooth rows holds more sky than the image:
    # the matching's target gets the same proportions, or it would turn the extra sky into fragments.
    smooth_rows = start == "tile" and cfg.tile_rows == "smooth" and size[0] > bundle.train_size[0]
    if cfg.match_steps:
        finish.append(
            PatchMatchFinish(
                image,
                row_mass=row_heights(image, size[0]) if smooth_rows else None,
                patch=cfg.match_patch,
                steps=cfg.match_steps,
                lr=cfg.match_lr,
                projections=cfg.match_projections,
                levels=cfg.match_levels,
                seed=cfg.seed,
            )
        )
    if cfg.finish == "nearest":
        finish += [
            NearestPatchFinish(
                image,
                patch=cfg.finish_patch,
                blur=cfg.finish_blur,
                window=cfg.finish_window,
                cells=cfg.finish_cells,
                probes=cfg.finish_probes,
                coherence=cfg.finish_coherence,
            )
        ]
    if start == "noise":
        bundle.check_start(sampler, None, "sample.init=noise")
        return Prepared(bundle, size, sampler, (lambda begin, end: finish) if finish else None, None, start)
    t_start = step_of_fraction(cfg.init_t, bundle.diffusion.num_timesteps)
    bundle.check_start(sampler, t_start, f"sample.init_t={cfg.init_t:g}")
    if start == "layout":
        layout = layout_of(image, cfg.init_factor, size)
        return Prepared(bundle, size, sampler, lambda begin, end: [LayoutStartHook(layout), *finish], t_start, start)
    if start == "tile":
        seam_width, join_t, pin, redraw = 0.0, None, 0, None
        seam_t = cfg.seam_redraw_t(start)
        if seam_t and has_seams(bundle.train_size, size):
            # The seams' band starts from more noise; the rest joins at init_t (tiled_layout.py).
            seam_width, join_t = cfg.seam_width * bundle.train_size[1], t_start
            t_start = step_of_fraction(seam_t, bundle.diffusion.num_timesteps)
            bundle.check_start(sampler, t_start, f"sample.seam_t={seam_t:g}")
            pin = seam_pin_factor(cfg.seam_pin, size)
            redraw = {"seam_t": seam_t, "seam_width_px": seam_width, "seam_pin": pin}

        # The whole canvas's coarse band held to the layout's for a while (layout_pin), at every size.
        layout_pin = seam_pin_factor(cfg.layout_pin, size)
        pin_until = step_of_fraction(cfg.layout_pin_t, bundle.diffusion.num_timesteps) if layout_pin else None
        if pin_until is not None and pin_until >= t_start:  # no step left to pin: recorded as off
            layout_pin, pin_until = 0, None
        starts: list[TiledLayoutStartHook] = []

        def tiled(begin: int, end: int) -> list[SamplingHook]:
            # A batch's hook takes the swap's arrangements the previous batch's searched (one search a draw).
            searched = starts[-1].arrangements if starts else None
            starts.append(
                TiledLayoutStartHook(
                    image,
                    cfg.init_factor,
                    cfg.tile_rows,
                    seam_width,
                    join_t,
                    pin,
                    cfg.tile_cols,
                    searched,
                    layout_pin,
                    pin_until,
                    cfg.swap_pool,
                )
            )
            return [starts[-1], *finish]

        return Prepared(bundle, size, sampler, tiled, t_start, start, starts, redraw, layout_pin)
    options = {
        "side": cfg.layout_side,
        "patch": cfg.layout_patch,
        "noise_std": cfg.layout_noise,
        "iters": cfg.layout_iters,
    }
    hooks = lambda begin, end: [NativeLayoutStartHook(image, **options), *finish]  # noqa: E731
    return Prepared(bundle, size, sampler, hooks, t_start, start)


def draw(cfg: SampleConfig, prepared: Prepared, label: str, progress: bool) -> tuple[torch.Tensor, dict[str, float]]:
    """The ``sample`` section's ``num_samples`` samples of ``prepared`` (:func:`prepare`), under a
    progress bar named ``label`` that counts denoising steps; returns ``generate``'s
    ``([num, 3, H, W] in [-1, 1], timings)``. Every caller that scores "the samples of this config"
    (the sample stage, ``time-curve``) draws them here, so they agree."""
    p = prepared
    p.tile_starts.clear()  # Prepared.seams() reports this draw's samples
    n_batches = -(-cfg.num_samples // cfg.batch_size)
    bar = make_progress(label, n_batches * len(p.sampler.visited(p.t_start)), progress, unit="step")
    samples, timings = generate(
        p.bundle,
        cfg.num_samples,
        p.size,
        p.sampler,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        clip_x0=x0_clip_of(cfg),
        progress=lambda i, n: bar.update(1),
        hooks_for=p.hooks_for,
        t_start=p.t_start,
    )
    bar.close()
    return samples, timings
