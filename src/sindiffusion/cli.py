"""The ``sindiffusion`` command line. Parsing only: each subcommand calls a stage.

Every stage takes ``--image NAME`` (a file ``data/images/NAME.*``) and derives its inputs and
outputs from :mod:`sindiffusion.paths`; ``--params FILE`` and ``--set section.key=value``
choose the configuration. Errors exit with status 2 (bad input/config) or 1 (runtime failure)
and a one-line message naming the file or key.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from .signals import Preempted, stop_on_signals


def image_name(value: str) -> str:
    """argparse ``type`` of ``--image``: :func:`sindiffusion.paths.check_image_name` (argparse exits 2)."""
    from .paths import check_image_name

    try:
        return check_image_name(value, where="")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_overrides(p: argparse.ArgumentParser, help: str) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help=help)


def _common(p: argparse.ArgumentParser, image: bool = True) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    add_overrides(p, "override one params value (repeatable), e.g. --set train.steps=100")
    if image:
        p.add_argument(
            "--image", required=True, type=image_name, help="image name: the stem of a file in data.images_dir"
        )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_force(p: argparse.ArgumentParser) -> None:
    """``--force``: let ``--out`` replace a non-empty folder that sindiffusion did not write."""
    p.add_argument(
        "--force",
        action="store_true",
        help="replace --out even if it is a non-empty folder sindiffusion did not write (deletes it)",
    )


def add_model(p: argparse.ArgumentParser, checkpoint_help: str, required: bool = False) -> None:
    """``--checkpoint FILE`` or ``--model-uri URI`` (an MLflow model; one of them at most, or
    exactly one if ``required``): what a command that reads a trained model loads."""
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--checkpoint", help=checkpoint_help)
    group.add_argument(
        "--model-uri",
        metavar="URI",
        help="instead of --checkpoint: a model logged by `sindiffusion train` in MLflow (tracking.tracking_uri): "
        "models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-ID or runs:/RUN_ID/NAME",
    )


def _command(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], None],
    image: bool = True,
    common: bool = True,
) -> argparse.ArgumentParser:
    """Subcommand ``name``, run as ``func(args)``, with ``func``'s docstring as its help and the
    :func:`_common` options (``--image`` only if ``image``; none of them if not ``common``)."""
    p = sub.add_parser(name, help=" ".join((inspect.getdoc(func) or "").split()))
    if common:
        _common(p, image=image)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    from .diffusion.samplers import SAMPLERS  # imported here, after main() put its signal handlers in place
    from .runtime import PRECISIONS

    parser = argparse.ArgumentParser(prog="sindiffusion", description="Learn a diffusion model from one image.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "preprocess", _preprocess)
    p.add_argument("--source", help="raw image file (default: data.images_dir/IMAGE.*)")

    _command(sub, "train", _train)

    p = _command(sub, "log-model", _log_model)
    p.add_argument("--checkpoint", help="checkpoint (default: results/IMAGE/train/model.pt)")

    p = _command(sub, "sample", _sample)
    add_model(p, "checkpoint (default: results/IMAGE/train/model.pt)")
    p.add_argument("--out", help="output folder (default: results/IMAGE/samples)")
    add_force(p)
    p.add_argument("--num", type=int, help="shortcut for --set sample.num_samples=N")
    p.add_argument("--height", type=int, help="shortcut for --set sample.height=H")
    p.add_argument("--width", type=int, help="shortcut for --set sample.width=W")
    p.add_argument("--sampler", choices=SAMPLERS.names(), help="shortcut for --set sample.sampler=...")
    p.add_argument("--steps", type=int, help="shortcut for --set sample.steps=N")
    p.add_argument("--seed", type=int, help="shortcut for --set sample.seed=N")

    _command(sub, "images", _images, image=False)
    _command(sub, "demo-image", _demo_image, image=False)

    p = _command(sub, "benchmark-speed", _benchmark_speed, common=False)
    p.add_argument("--preset", default="paper")
    p.add_argument("--height", type=int, default=186)
    p.add_argument("--width", type=int, default=248)
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument("--sample-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward pass")
    p.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=[],
        metavar="PRECISION,CHANNELS_LAST,COMPILE",
        help="time several settings in one run (repeatable), e.g. --variant bf16,on,off --variant bf16,on,on",
    )
    p.add_argument("--params", help="take the UNet from this params file's model section instead of --preset")
    add_overrides(p, "with --params: override a value (repeatable)")
    p.add_argument("--json", help="also write the results to this JSON file (rewritten after each variant)")

    p = _command(sub, "time-curve", _time_curve, image=False)
    p.add_argument("--images-dir", required=True, help="folder of training images (e.g. ../shared/data/places50)")
    p.add_argument(
        "--images", required=True, metavar="SELECTION", help="which images: names and numeric ranges, e.g. 1,2,3 or 1-3"
    )
    p.add_argument(
        "--minutes", default="1,2,5,10,20", help="wall-clock snapshot marks in minutes (default: 1,2,5,10,20)"
    )
    p.add_argument("--num", type=int, help="samples per snapshot (default: sample.num_samples)")
    p.add_argument("--out", default="results-time-curve", help="output folder (default: results-time-curve)")
    p.add_argument(
        "--rescore",
        action="store_true",
        help="do not train: sample and score the snapshots an earlier run left in --out (e.g. with another "
        "sample section)",
    )

    p = _command(sub, "time-curve-compare", _time_curve_compare, image=False)
    p.add_argument(
        "picks",
        nargs="+",
        metavar="[LABEL=]RUN",
        help="a finished time-curve's --out folder, optionally named, e.g. ref=curve-ref 3lv=curve-3lv",
    )
    p.add_argument("--out", required=True, help="folder for the tables, plot and contact sheets")
    p.add_argument("--minutes", help="only these marks, e.g. 10 or 5,10 (default: every mark all runs have)")
    p.add_argument(
        "--baselines",
        help="folder with one subfolder per method (e.g. singan/, gpnn/) of published samples named like the "
        "training images: scored and shown beside the runs",
    )

    p = _command(sub, "denoise-gap", _denoise_gap, image=False)
    add_model(p, "a UNet checkpoint (results/<image>/train/model.pt)", required=True)
    p.add_argument("--out", default="results-denoise-gap", help="output folder (default: results-denoise-gap)")
    p.add_argument("--points", type=int, default=12, help="noise levels from t=0 to T-1 (default: 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-file", help="the training image (default: the path recorded in the checkpoint)")

    for hook in _EXTENSIONS:
        hook(sub, _common)
    return parser


#: Subsystems (evaluation, applications) add subcommands here: ``fn(subparsers, add_common)``.
_EXTENSIONS: list[Callable[[argparse._SubParsersAction, Callable], None]] = []


def study_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords that the studies over a folder of images (``time-curve``, ``benchmark``) take
    from their common options: the image selection, the output folder, the params file with its
    ``--set`` overrides, and progress bars."""
    return {
        "images": args.images,
        "out": args.out,
        "params_path": args.params,
        "overrides": args.overrides,
        "progress": not args.no_progress,
    }


def load(args: argparse.Namespace, extra: Sequence[str] = ()):
    """The params of ``--params`` and ``--set``, every section and every edit checked (exit 2 on a bad value);
    a pipeline command refuses a file that lacks a section it reads (an empty or truncated file)."""
    from .applications.config import validate_all_edits
    from .config import check_written, load_params

    params = load_params(args.params, list(args.overrides) + list(extra))
    check_written(params, getattr(args, "command", ""))
    if "manipulate" in params.raw:
        validate_all_edits(params.section("manipulate"), params.path)
    return params


def _preprocess(args: argparse.Namespace) -> None:
    """resize the raw image and describe it"""
    from .stages import preprocess

    meta = preprocess.run(load(args), args.image, args.source)
    print(
        f"{args.image}: {meta['original_size']} -> {meta['processed_size']}, receptive field "
        f"{meta['receptive_field_px']} px ({meta['receptive_field_fraction']:.2f} of the image)"
    )


def _train(args: argparse.Namespace) -> None:
    """train (or resume) the model of one image"""
    from .stages import train

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
    from .stages import sample
    from .stages.common import image_paths

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
    from .stages import train

    print(train.log_model(load(args), args.image, args.checkpoint))


def _images(args: argparse.Namespace) -> None:
    """list the images the pipeline runs on"""
    from .paths import list_images

    data = load(args).section("data")
    for name in data.images or list_images(data.images_dir):
        print(name)


def _demo_image(args: argparse.Namespace) -> None:
    """put the bundled demo image into data.images_dir"""
    from .demo import install_demo_image

    print(install_demo_image(load(args).section("data").images_dir))


def _benchmark_speed(args: argparse.Namespace) -> None:
    """time training iterations and denoising steps on this device"""
    from .benchmark import speed

    speed.main(args)


def _time_curve(args: argparse.Namespace) -> None:
    """quality vs minutes of training: snapshots of one training per image,
    weight-free metrics, CSV + plot + MLflow"""
    from .benchmark import time_curve

    if args.num is not None and args.num < 1:
        raise ValueError(f"--num {args.num}: must be >= 1")
    minutes = time_curve.parse_minutes(args.minutes)
    result = time_curve.run_time_curve(
        args.images_dir, minutes=minutes, num=args.num, rescore=args.rescore, **study_inputs(args)
    )
    print(
        f"time-curve: {len(result['rows'])} points of {len(result['settings']['images'])} images -> "
        f"{result['files']['csv']}, {result['files']['plot']}"
    )


def _time_curve_compare(args: argparse.Namespace) -> None:
    """time-curve runs side by side on the images and marks they share:
    tables, plot, contact sheets (+ published baselines)"""
    from .benchmark import curve_compare, time_curve

    params = load(args)
    picks = [curve_compare.parse_curve_pick(p) for p in args.picks]
    minutes = time_curve.parse_minutes(args.minutes) if args.minutes is not None else None
    result = curve_compare.compare_curves(picks, args.out, params, minutes=minutes, baselines=args.baselines)
    curve_compare.log_mlflow(params, result, Path(args.out))
    print(curve_compare.render_markdown(result))
    print(
        f"time-curve-compare: {len(picks)} runs on {len(result['settings']['images'])} images -> "
        f"{result['files']['markdown']}, {args.out}/sheets/"
    )


def _denoise_gap(args: argparse.Namespace) -> None:
    """a trained UNet vs the closed-form patch denoiser on its own noisy
    training image, per noise level: CSV + plot + MLflow"""
    from .benchmark import denoise_gap
    from .stages.common import model_source

    params = load(args)
    model = params.section("model")  # --params configs/patch.yaml: compare with that closed form
    source = model_source(params, args.checkpoint, args.model_uri, kinds={"unet"})
    rows = denoise_gap.denoise_gap(
        source.path,
        closed_form=model if model.kind == "patch" else None,
        points=args.points,
        seed=args.seed,
        image_path=args.image_file,
    )
    from .checkpoint import load_checkpoint

    image = str(load_checkpoint(source.path)["image"]["name"])
    files = denoise_gap.write_outputs(rows, args.out, {"checkpoint": source.label, "image": image})
    denoise_gap.log_mlflow(rows, files, params.section("tracking"), image)
    for r in rows:
        print(
            f"t={r['t']:4d}  UNet-vs-closed {r['rmse_gap']:.4f}  UNet {r['rmse_unet']:.4f}  "
            f"closed {r['rmse_closed']:.4f}"
        )
    print(f"denoise-gap: {files['csv']}, {files['plot']}")


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
    """Run one command; returns its exit status. SIGTERM/SIGUSR1 stop it cleanly with status 75 from
    here on (:mod:`sindiffusion.signals`): the handlers are in place before torch or MLflow is imported."""
    with stop_on_signals():
        try:
            return _run(argv)
        except Preempted as stop:  # a signal (Slurm preemption / time limit, kill, Ctrl-C): nothing half-written
            words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
            print(f"{' '.join(['sindiffusion', *words[:1]])}: {stop}", file=sys.stderr)
            return stop.exit_status


def _run(argv: Sequence[str] | None) -> int:
    _load_extensions()
    parser = build_parser()
    args = parser.parse_args(argv)
    from .artifacts import DiskFullError
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
    except DiskFullError as err:  # no bad input, and nothing a traceback would explain
        print(f"sindiffusion {args.command}: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        if os.environ.get("SINDIFFUSION_DEBUG"):
            traceback.print_exc()
        print(
            f"sindiffusion {args.command}: failed: {type(err).__name__}: {err} "
            "(set SINDIFFUSION_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
