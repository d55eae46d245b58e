"""``sindiffusion benchmark-speed``: training it/s and seconds per denoising step.

Defaults reproduce the official measurement setting: ``paper`` UNet, a 248x186 training batch of
16 (after the official rescale the batch is ~this size), 186x248 sampling at batch 1 and 8.
The math is identical to the official code (same architecture, eps-MSE, fp32 on CPU).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ..config import DiffusionConfig, TrainConfig
from ..diffusion import GaussianDiffusion
from ..models.unet import PRESETS, UNet, count_parameters
from ..precision import autocast, autocast_dtype, describe
from ..training.trainer import Trainer, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_train(preset: str, h: int, w: int, batch: int, iters: int, device: torch.device, precision: str) -> dict:
    image = torch.rand(3, h, w) * 2 - 1
    cfg = TrainConfig(batch_size=batch, scale_min=1.0, scale_max=1.0, device=str(device), precision=precision)
    trainer = Trainer(image, PRESETS[preset], DiffusionConfig(), cfg, {"name": "bench"}, device)
    trainer.train_step()  # warm-up (allocator, cuDNN autotune)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        trainer.train_step()
    _sync(device)
    dt = (time.perf_counter() - t0) / iters
    out = {"train_seconds_per_iter": dt, "train_it_per_s": 1 / dt}
    if device.type == "cuda":
        out["train_peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


@torch.inference_mode()
def bench_step(preset: str, h: int, w: int, batch: int, iters: int, device: torch.device, precision: str) -> float:
    model = UNet(PRESETS[preset]).to(device).eval()
    diffusion = GaussianDiffusion.from_config("linear", 1000, 1e-4, 0.02)
    x = torch.randn(batch, 3, h, w, device=device)
    dtype = autocast_dtype(precision, device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def eps(xx: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        with autocast(device, dtype):
            return model(xx, tt).float()

    diffusion.p_output(eps, x, 500)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(iters):
        x = diffusion.p_output(eps, x, 999 - i).mean
    _sync(device)
    return (time.perf_counter() - t0) / iters


def main(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    torch.manual_seed(0)
    result: dict = {"device": str(device), "preset": args.preset, "parameters": count_parameters(UNet(PRESETS[args.preset])),
                    "torch": torch.__version__, "threads": torch.get_num_threads(), "precision": args.precision,
                    "precision_used": describe(args.precision, device)}
    result.update(bench_train(args.preset, args.width, args.height, args.train_batch, args.iters, device, args.precision))
    print(f"train  {args.preset} {args.width}x{args.height} batch {args.train_batch}: "
          f"{result['train_seconds_per_iter']:.3f} s/it ({result['train_it_per_s']:.3f} it/s)", flush=True)
    for b in args.sample_batches:
        s = bench_step(args.preset, args.height, args.width, b, args.iters, device, args.precision)
        result[f"step_seconds_batch{b}"] = s
        print(f"sample {args.preset} {args.height}x{args.width} batch {b}: {s:.3f} s/step", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result
