"""The ``sindiffusion`` command line. Parsing only: each subcommand calls a stage.

Every stage takes ``--image NAME`` (a file ``data/images/NAME.*``) and derives its inputs and
outputs from :mod:`sindiffusion.paths`; ``--params FILE`` and ``--set section.key=value``
choose the configuration. Errors exit with status 2 (bad input/config) or 1 (runtime failure)
and a one-line message naming the file or key.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Sequence


def _common(p: argparse.ArgumentParser, image: bool = True) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one params value (repeatable), e.g. --set train.steps=100")
    if image:
        p.add_argument("--image", required=True, help="image name: the stem of a file in data.images_dir")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sindiffusion", description="Learn a diffusion model from one image.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("preprocess", help="resize the raw image and describe it")
    _common(p)
    p.add_argument("--source", help="raw image file (default: data.images_dir/IMAGE.*)")
    p.set_defaults(func=_preprocess)

    p = sub.add_parser("train", help="train (or resume) the model of one image")
    _common(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("sample", help="draw random samples at any size")
    _common(p)
    p.add_argument("--checkpoint", help="checkpoint (default: results/IMAGE/train/model.pt)")
    p.add_argument("--out", help="output folder (default: results/IMAGE/samples)")
    p.add_argument("--num", type=int, help="shortcut for --set sample.num_samples=N")
    p.add_argument("--height", type=int, help="shortcut for --set sample.height=H")
    p.add_argument("--width", type=int, help="shortcut for --set sample.width=W")
    p.add_argument("--sampler", choices=["ddpm", "ddim"], help="shortcut for --set sample.sampler=...")
    p.add_argument("--steps", type=int, help="shortcut for --set sample.steps=N")
    p.add_argument("--seed", type=int, help="shortcut for --set sample.seed=N")
    p.set_defaults(func=_sample)

    p = sub.add_parser("images", help="list the images the pipeline runs on")
    _common(p, image=False)
    p.set_defaults(func=_images)

    p = sub.add_parser("demo-image", help="put the bundled demo image into data.images_dir")
    _common(p, image=False)
    p.set_defaults(func=_demo_image)

    p = sub.add_parser("benchmark-speed", help="time training iterations and denoising steps on this device")
    p.add_argument("--preset", default="paper")
    p.add_argument("--height", type=int, default=186)
    p.add_argument("--width", type=int, default=248)
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument("--sample-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=_benchmark_speed)

    for hook in _EXTENSIONS:
        hook(sub, _common)
    return parser


#: Subsystems (evaluation, applications) add subcommands here: ``fn(subparsers, add_common)``.
_EXTENSIONS: list[Callable[[argparse._SubParsersAction, Callable], None]] = []


def _load(args: argparse.Namespace, extra: Sequence[str] = ()):
    from .config import load_params

    return load_params(args.params, list(args.overrides) + list(extra))


def _preprocess(args: argparse.Namespace) -> None:
    from .stages import preprocess

    meta = preprocess.run(_load(args), args.image, args.source)
    print(f"{args.image}: {meta['original_size']} -> {meta['processed_size']}, receptive field "
          f"{meta['receptive_field_px']} px ({meta['receptive_field_fraction']:.2f} of the image)")


def _train(args: argparse.Namespace) -> None:
    from .stages import train

    metrics = train.run(_load(args), args.image, progress=not args.no_progress)
    if metrics.get("model_kind", "unet") != "unet" and not metrics["steps"]:
        print(f"{args.image}: {metrics['model_kind']} model built in {metrics['train_seconds']:.2f} s (training-free)")
        return
    print(f"{args.image}: trained {metrics['steps']} steps, final loss {metrics['final_loss']:.4f}, "
          f"{metrics['it_per_s']:.2f} it/s")


def _sample(args: argparse.Namespace) -> None:
    from .stages import sample

    extra = [f"sample.{k}={v}" for k, v in (("num_samples", args.num), ("height", args.height), ("width", args.width),
                                              ("sampler", args.sampler), ("steps", args.steps), ("seed", args.seed))
             if v is not None]
    meta = sample.run(_load(args, extra), args.image, args.checkpoint, args.out, progress=not args.no_progress)
    print(f"{args.image}: {len(meta['files'])} samples of {meta['size'][0]}x{meta['size'][1]} in "
          f"{meta['sample_seconds']:.1f} s -> {args.out or 'results/' + args.image + '/samples'}")


def _images(args: argparse.Namespace) -> None:
    from .paths import list_images

    data = _load(args).section("data")
    for name in data.images or list_images(data.images_dir):
        print(name)


def _demo_image(args: argparse.Namespace) -> None:
    from .demo import install_demo_image

    print(install_demo_image(_load(args).section("data").images_dir))


def _benchmark_speed(args: argparse.Namespace) -> None:
    from .benchmark import speed

    speed.main(args)


def _load_extensions() -> None:
    for module in ("sindiffusion.evaluation.cli", "sindiffusion.applications.cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        if mod.register not in _EXTENSIONS:  # main() may run many times in one process
            _EXTENSIONS.append(mod.register)


def main(argv: Sequence[str] | None = None) -> int:
    _load_extensions()
    parser = build_parser()
    args = parser.parse_args(argv)
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data.io import ImageError

    try:
        args.func(args)
    except (ConfigError, ImageError, CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"sindiffusion {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sindiffusion {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("SINDIFFUSION_DEBUG"):
            traceback.print_exc()
        print(f"sindiffusion {args.command}: failed: {type(err).__name__}: {err} "
              "(set SINDIFFUSION_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
