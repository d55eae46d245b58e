"""``sindiffusion benchmark-speed``: training it/s and seconds per denoising step.

Defaults reproduce the official measurement setting: ``paper`` UNet, a 248x186 training batch of
16 (after the official rescale the batch is ~this size), 186x248 sampling at batch 1 and 8.
The math is identical to the official code (same architecture, eps-MSE, fp32 on CPU).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

import torch

from ..artifacts import atomic_write
from ..config import DiffusionConfig, TrainConfig, load_params
from ..diffusion import GaussianDiffusion
from ..models.unet import PRESETS, UNet, UNetConfig, count_parameters
from ..models.unet_kind import UNetOptions
from ..runtime import PRECISIONS, autocast, autocast_dtype, describe, resolve_device
from ..training.trainer import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@dataclass(frozen=True)
class Workload:
    """What one timing runs: ``unet`` on ``[batch, 3, h, w]`` inputs, ``iters`` timed repeats, on
    ``device`` with ``precision`` and ``channels_last`` (``auto``/``on``/``off``)."""

    unet: UNetConfig
    h: int
    w: int
    batch: int
    iters: int
    device: torch.device
    precision: str
    channels_last: str = "auto"


def bench_train(work: Workload, compile: bool = False) -> dict:
    """Seconds per training iteration (after one warm-up step, which also compiles with ``compile``)."""
    unet, batch, iters, device = work.unet, work.batch, work.iters, work.device
    image = torch.rand(3, work.h, work.w) * 2 - 1
    cfg = TrainConfig(
        batch_size=batch,
        scale_min=1.0,
        scale_max=1.0,
        device=str(device),
        precision=work.precision,
        channels_last=work.channels_last,
        compile=compile,
    )
    trainer = Trainer(image, UNetOptions.of(unet), DiffusionConfig(), cfg, {"name": "bench"}, device)
    t0 = time.perf_counter()
    trainer.train_step()  # warm-up (allocator, cuDNN autotune, torch.compile)
    _sync(device)
    out = {"train_warmup_seconds": time.perf_counter() - t0}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        trainer.train_step()
    _sync(device)
    dt = (time.perf_counter() - t0) / iters
    out.update(train_seconds_per_iter=dt, train_it_per_s=1 / dt)
    if device.type == "cuda":
        out["train_peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


@torch.inference_mode()
def bench_step(work: Workload) -> float:
    """Seconds per denoising step (one network call + the DDPM update) at ``work.batch``."""
    device, iters = work.device, work.iters
    model = UNet(work.unet).to(device).eval()
    diffusion = GaussianDiffusion.from_config("linear", 1000, 1e-4, 0.02)
    x = torch.randn(work.batch, 3, work.h, work.w, device=device)
    dtype = autocast_dtype(work.precision, device)
    if {"auto": device.type == "cuda", "on": True, "off": False}[work.channels_last]:
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


def parse_variant(text: str) -> tuple[str, str, bool]:
    """``"bf16,on,off"`` -> (precision, channels_last, compile); ValueError naming ``--variant``."""
    parts = [p.strip() for p in text.split(",")]
    if (
        len(parts) != 3
        or parts[0] not in PRECISIONS
        or parts[1] not in ("auto", "on", "off")
        or parts[2] not in ("on", "off")
    ):
        raise ValueError(
            f"--variant {text!r}: expected PRECISION,CHANNELS_LAST,COMPILE with PRECISION in "
            "auto/fp32/bf16, CHANNELS_LAST in auto/on/off, COMPILE in on/off, e.g. bf16,on,off"
        )
    return parts[0], parts[1], parts[2] == "on"


def _unet(preset: str, params: str | None, overrides: list[str] | tuple[str, ...]) -> tuple[str, UNetConfig]:
    if params:
        return f"{params}: model", load_params(params, list(overrides)).section("model").unet()
    if preset not in PRESETS:
        raise ValueError(f"--preset {preset!r}: choose one of {sorted(PRESETS)}")
    return preset, PRESETS[preset]


def _write(path: str | None, result: dict) -> None:
    if path:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(result, indent=2)))


def run_speed(
    *,
    preset: str = "paper",
    params: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    height: int = 186,
    width: int = 248,
    train_batch: int = 16,
    sample_batches: list[int] | tuple[int, ...] = (1, 8),
    iters: int = 3,
    device: str = "auto",
    precision: str = "auto",
    channels_last: str = "auto",
    compile: bool = False,
    variants: list[str] | tuple[str, ...] = (),
    json_path: str | None = None,
) -> dict:
    """Time the UNet of ``preset`` (or of ``params``' model section with ``overrides``): training
    iterations at ``width`` x ``height`` batch ``train_batch`` and denoising steps at each of
    ``sample_batches``, ``iters`` repeats each, once per variant (``"PRECISION,CHANNELS_LAST,COMPILE"``
    texts, default: ``precision``/``channels_last``/``compile``). ``json_path``: the JSON is rewritten
    after each variant, so a run cut short by a time limit still leaves the variants it finished."""
    dev = resolve_device(device)
    torch.manual_seed(0)
    name, unet = _unet(preset, params, overrides)
    chosen = [parse_variant(v) for v in variants] or [(precision, channels_last, compile)]
    result: dict = {
        "device": str(dev),
        "preset": name,
        "parameters": count_parameters(UNet(unet)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "variants": [],
    }
    if dev.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(dev)
    for prec, cl, comp in chosen:
        v: dict = {
            "precision": prec,
            "precision_used": describe(prec, dev),
            "channels_last": cl,
            "compile": comp,
        }
        # the training batch is width x height, as in the official measurement (see the module docstring)
        train = Workload(unet, width, height, train_batch, iters, dev, prec, cl)
        v.update(bench_train(train, comp))
        print(
            f"train  {name} {width}x{height} batch {train_batch} [{prec}, channels_last "
            f"{cl}, compile {'on' if comp else 'off'}]: {v['train_seconds_per_iter']:.4f} s/it "
            f"({v['train_it_per_s']:.2f} it/s)",
            flush=True,
        )
        if not comp:  # sampling never compiles: its timing is the same with and without
            for b in sample_batches:
                step = dataclasses.replace(train, h=height, w=width, batch=b)
                v[f"step_seconds_batch{b}"] = bench_step(step)
                print(
                    f"sample {name} {height}x{width} batch {b} [{prec}, channels_last "
                    f"{cl}]: {v[f'step_seconds_batch{b}']:.4f} s/step",
                    flush=True,
                )
        result["variants"].append(v)
        if len(chosen) == 1:
            result.update(v)  # the flat layout of a single run, as before
        _write(json_path, result)
    return result
