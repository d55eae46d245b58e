"""``sindiffusion sample``: N random samples at any size + a grid image."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..artifacts import write_json, writing_dir
from ..checkpoint import check_checkpoint_image
from ..config import Params, SampleConfig
from ..data.io import make_grid, save_grid, save_image, tensor_to_image
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
) -> dict:
    """Draw ``sample.num_samples`` samples into ``out_dir`` (default ``results/<image>/samples``).

    A user's ``out_dir`` that is not empty and not written by sindiffusion is refused unless
    ``force`` (:mod:`sindiffusion.outdir`); the default folder is the project's own.
    """
    cfg = params.section("sample")
    paths = image_paths(params, image)
    ckpt_path, out, force = model_io(paths, checkpoint, out_dir, paths.samples, force)
    device = resolve_device(cfg.device)
    prepared = prepare(cfg, ckpt_path, paths.processed, device)
    bundle, size = prepared.bundle, prepared.size
    for warning in check_checkpoint_image(bundle.checkpoint, ckpt_path, image, paths.processed, strict=False):
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    print(f"sample: {describe(cfg.precision, device)}", file=sys.stderr, flush=True)
    note = f"Samples and timings are still written to {out}."
    with tracked("sample", image, params, device, note, {"checkpoint": str(ckpt_path)}) as tracker:
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
                "checkpoint": str(ckpt_path),
                "checkpoint_step": int(bundle.checkpoint["step"]),
                "size": list(size),
                "files": files,
                "device": str(device),
                **dataclasses.asdict(cfg),
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
    ``t_start`` None) or, with ``sample.init: layout``, the layout hook from ``t_start``. Built by
    :func:`prepare` only, so every caller samples a checkpoint the same way."""

    bundle: ModelBundle
    size: tuple[int, int]
    sampler: Sampler
    hooks_for: Callable[[int, int], Sequence[SamplingHook]] | None = None
    t_start: int | None = None


def prepare(cfg: SampleConfig, checkpoint: Path, processed: Path, device: torch.device) -> Prepared:
    """Load ``checkpoint`` and set up the ``sample`` section's sampling of it: the output size, the
    sampler and the start. ``sample.init: layout`` starts each sample from the processed training
    image ``processed`` (area-down by ``init_factor``, resized to the output size) noised to
    ``init_t * T``; a missing file is a ValueError naming it (exit 2), raised here so that callers
    fail before anything is tracked or written."""
    # The file check comes before the (slow) model load; with neither file present the user is
    # told the first step to run, preprocess.
    if cfg.init == "layout" and not processed.is_file():
        raise ValueError(
            f"{processed}: sample.init=layout starts from this processed training image, which is missing; "
            "run `sindiffusion preprocess` for the image, or set sample.init=noise"
        )
    bundle = load_bundle(checkpoint, device, use_ema=cfg.use_ema, precision=cfg.precision)
    size = output_size(bundle.train_size, cfg.height, cfg.width, cfg.scale_h, cfg.scale_w)
    sampler = build_sampler(cfg, bundle.diffusion)
    if cfg.init != "layout":
        bundle.check_start(sampler, None, "sample.init=noise")
        return Prepared(bundle, size, sampler)
    from ..applications.layout_start import LayoutStartHook, layout_of
    from ..data.io import image_to_tensor, load_image

    layout = layout_of(image_to_tensor(load_image(processed))[None], cfg.init_factor, size)
    t_start = step_of_fraction(cfg.init_t, bundle.diffusion.num_timesteps)
    bundle.check_start(sampler, t_start, f"sample.init_t={cfg.init_t:g}")
    return Prepared(bundle, size, sampler, lambda start, end: [LayoutStartHook(layout)], t_start)


def draw(cfg: SampleConfig, prepared: Prepared, label: str, progress: bool) -> tuple[torch.Tensor, dict[str, float]]:
    """The ``sample`` section's ``num_samples`` samples of ``prepared`` (:func:`prepare`), under a
    progress bar named ``label`` that counts denoising steps; returns ``generate``'s
    ``([num, 3, H, W] in [-1, 1], timings)``. Every caller that scores "the samples of this config"
    (the sample stage, ``time-curve``) draws them here, so they agree."""
    p = prepared
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
