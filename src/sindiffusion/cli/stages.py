"""The pipeline commands: ``preprocess``, ``train``, ``log-model``, ``sample``, ``images``, ``demo-image``."""

from __future__ import annotations

import argparse
from typing import Callable

from ..demo import install_demo_image
from ..diffusion.samplers import SAMPLERS
from ..paths import list_images
from ..stages import preprocess, sample, train
from ..stages.common import image_paths
from .options import add_force, add_model, command
from .params import load


def register(sub: argparse._SubParsersAction, add_common: Callable[..., None]) -> None:
    command(sub, "preprocess", _preprocess).add_argument(
        "--source", help="raw image file (default: data.images_dir/IMAGE.*)"
    )

    command(sub, "train", _train)

    p = command(sub, "log-model", _log_model)
    p.add_argument("--checkpoint", help="checkpoint (default: results/IMAGE/train/model.pt)")

    p = command(sub, "sample", _sample)
    add_model(p, "checkpoint (default: results/IMAGE/train/model.pt)")
    p.add_argument("--out", help="output folder (default: results/IMAGE/samples)")
    add_force(p)
    p.add_argument("--num", type=int, help="shortcut for --set sample.num_samples=N")
    p.add_argument("--height", type=int, help="shortcut for --set sample.height=H")
    p.add_argument("--width", type=int, help="shortcut for --set sample.width=W")
    p.add_argument("--sampler", choices=SAMPLERS.names(), help="shortcut for --set sample.sampler=...")
    p.add_argument("--steps", type=int, help="shortcut for --set sample.steps=N")
    p.add_argument("--seed", type=int, help="shortcut for --set sample.seed=N")

    command(sub, "images", _images, image=False)
    command(sub, "demo-image", _demo_image, image=False)


def _preprocess(args: argparse.Namespace) -> None:
    """resize the raw image and describe it"""
    meta = preprocess.run(load(args), args.image, args.source)
    print(
        f"{args.image}: {meta['original_size']} -> {meta['processed_size']}, receptive field "
        f"{meta['receptive_field_px']} px ({meta['receptive_field_fraction']:.2f} of the image)"
    )


def _train(args: argparse.Namespace) -> None:
    """train (or resume) the model of one image"""
    metrics = train.run(load(args), args.image, progress=not args.no_progress)
    if metrics.get("model_kind", "unet") != "unet" and not metrics["steps"]:
        print(f"{args.image}: {metrics['model_kind']} model built in {metrics['train_seconds']:.2f} s (training-free)")
        return
    print(
        f"{args.image}: trained {metrics['steps']} steps, final loss {metrics['final_loss']:.4f}, "
        f"{metrics['it_per_s']:.2f} it/s"
    )


def _sample(args: argparse.Namespace) -> None:
    """draw random samples at any size"""
    extra = [
        f"sample.{k}={v}"
        for k, v in (
            ("num_samples", args.num),
            ("height", args.height),
            ("width", args.width),
            ("sampler", args.sampler),
            ("steps", args.steps),
            ("seed", args.seed),
        )
        if v is not None
    ]
    params = load(args, extra)
    meta = sample.run(
        params,
        args.image,
        args.checkpoint,
        args.out,
        progress=not args.no_progress,
        force=args.force,
        model_uri=args.model_uri,
    )
    out = args.out or image_paths(params, args.image).samples
    print(
        f"{args.image}: {len(meta['files'])} samples of {meta['size'][0]}x{meta['size'][1]} in "
        f"{meta['sample_seconds']:.1f} s -> {out}"
    )


def _log_model(args: argparse.Namespace) -> None:
    """log a trained checkpoint to MLflow as a logged model (as train does; for a model that training
    could not log)"""
    print(train.log_model(load(args), args.image, args.checkpoint))


def _images(args: argparse.Namespace) -> None:
    """list the images the pipeline runs on"""
    data = load(args).section("data")
    for name in data.images or list_images(data.images_dir):
        print(name)


def _demo_image(args: argparse.Namespace) -> None:
    """put the bundled demo image into data.images_dir"""
    print(install_demo_image(load(args).section("data").images_dir))
