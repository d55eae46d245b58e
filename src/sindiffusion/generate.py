"""Loading a trained model and drawing samples with the one sampling loop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .checkpoint import diffusion_from_checkpoint, load_checkpoint, model_from_checkpoint
from .diffusion import GaussianDiffusion, Sampler, SamplingHook, sample_loop, step_of_fraction
from .diffusion.x0 import X0ClipLike
from .runtime import autocast, autocast_dtype


@dataclass
class ModelBundle:
    """A trained model with its diffusion process and the checkpoint's description."""

    model: torch.nn.Module
    """Any registered model kind: ``(x_t [B,3,H,W], t [B]) -> eps``."""
    diffusion: GaussianDiffusion
    checkpoint: dict[str, Any]
    device: torch.device
    precision: str = "auto"
    """``auto`` / ``fp32`` / ``bf16`` (see :mod:`sindiffusion.runtime`)."""
    path: Path | None = None
    """The checkpoint file (named in errors)."""

    @property
    def train_size(self) -> tuple[int, int]:
        h, w = self.checkpoint["image"]["size"]
        return int(h), int(w)

    @property
    def image_name(self) -> str:
        return str(self.checkpoint["image"]["name"])

    @property
    def t_max(self) -> float:
        """``train.t_max`` of the checkpoint (1 when absent: checkpoints before the option, training-free kinds)."""
        return float((self.checkpoint["config"].get("train") or {}).get("t_max", 1.0))

    @property
    def max_start(self) -> int:
        """The highest timestep the model was trained on (:attr:`t_max` as a step)."""
        return step_of_fraction(self.t_max, self.diffusion.num_timesteps)

    def check_start(self, sampler: Sampler, t_start: int | None, what: str) -> None:
        """Refuse sampling that starts above :attr:`max_start`: the model never saw those noise levels
        and would turn them into garbage. ``what`` names the setting that chose the start (the error
        names it, the checkpoint and the highest start allowed). A ValueError (exit 2)."""
        visited = sampler.visited(t_start)
        first = visited[0] if visited else -1
        if first <= self.max_start:
            return
        T, t_max = self.diffusion.num_timesteps, self.t_max
        start = f"pure noise (step {first} of {T})" if t_start is None else f"step {first} of {T}"
        raise ValueError(
            f"{what} starts at {start}, but {self.path or 'the checkpoint'} was trained "
            f"only on t <= {self.max_start} (train.t_max={t_max:g}); start at or below it (sample.init=layout "
            f"with init_t <= {t_max:g}, or an edit's strength <= {t_max:g}) or train with train.t_max=1"
        )

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The denoiser as an eps-model: ``[B, 3, H, W]``, ``[B]`` -> predicted eps ``[B, 3, H, W]`` float32.

        Runs the network in :attr:`precision` and converts a v-prediction to eps
        (:meth:`GaussianDiffusion.eps_from_output`), so samplers never see the parameterisation.
        """
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, autocast_dtype(self.precision, self.device)):
            out = self.model(x, t)
        return self.diffusion.eps_from_output(out.float(), x.float(), t)


def load_bundle(path: str | Path, device: torch.device, use_ema: bool = True, precision: str = "auto") -> ModelBundle:
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, use_ema=use_ema, path=path).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    # Free the optimiser state: sampling needs none of it.
    ckpt = {k: v for k, v in ckpt.items() if k not in ("optimizer", "model", "ema", "rng")}
    return ModelBundle(model, diffusion_from_checkpoint(ckpt, path), ckpt, device, precision, Path(path))


def output_size(
    train_size: tuple[int, int], height: int | None, width: int | None, scale_h: float, scale_w: float
) -> tuple[int, int]:
    """Explicit ``height``/``width`` win; otherwise the training size times the scale factors."""
    h = height if height else round(train_size[0] * scale_h)
    w = width if width else round(train_size[1] * scale_w)
    if h < 8 or w < 8:
        raise ValueError(f"output size {h}x{w} is too small (minimum 8x8)")
    return int(h), int(w)


def sample_seed(seed: int, index: int) -> int:
    """The 64-bit seed of sample ``index`` of run ``seed``: a hash of the pair (numpy's SeedSequence),
    so that ``(seed, index)`` and ``(seed + 1, index - 1)`` draw unrelated noise."""
    entropy = [seed % 2**64, index]  # SeedSequence takes non-negative integers
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def generate(
    bundle: ModelBundle,
    num: int,
    size: tuple[int, int],
    sampler: Sampler,
    *,
    seed: int = 0,
    batch_size: int = 8,
    hooks_for: Callable[[int, int], Sequence[SamplingHook]] | None = None,
    t_start: int | None = None,
    clip_x0: X0ClipLike = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Draw ``num`` samples of ``size = (H, W)`` in batches; returns ``([num, 3, H, W] in [-1, 1], timings)``.

    Sample ``i`` depends only on ``(seed, i)``, not on the batch size: its noise comes from its own
    generator seeded :func:`sample_seed` ``(seed, i)``, so different seeds never share samples.
    ``sampler`` is built once per run (:func:`sindiffusion.diffusion.build_sampler`, its timesteps set).
    ``hooks_for(start, end)`` builds the hooks for samples ``start:end`` (applications).
    """
    if num < 1 or batch_size < 1:
        raise ValueError("the number of samples and the batch size must be >= 1")
    bundle.check_start(sampler, t_start, "sampling")  # callers check earlier, naming their setting
    smp = sampler
    outs = []
    t0 = time.perf_counter()
    n_steps = 0
    for start in range(0, num, batch_size):
        end = min(num, start + batch_size)
        gen = [torch.Generator().manual_seed(sample_seed(seed, i)) for i in range(start, end)]
        hooks = list(hooks_for(start, end)) if hooks_for else []
        x = sample_loop(
            bundle.eps,
            bundle.diffusion,
            smp,
            (end - start, 3, *size),
            hooks=hooks,
            generator=gen,
            device=bundle.device,
            t_start=t_start,
            clip_x0=clip_x0,
            progress=progress,
        )
        n_steps += len(smp.visited(t_start))
        outs.append(x.float().cpu())
    if bundle.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    timings = {
        "sample_seconds": seconds,
        "seconds_per_sample": seconds / num,
        "seconds_per_step": seconds / max(n_steps, 1),
    }
    return torch.cat(outs), timings
