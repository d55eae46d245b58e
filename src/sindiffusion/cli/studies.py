"""The research commands (:mod:`sindiffusion.studies`): ``benchmark-speed``, ``time-curve``,
``time-curve-compare``, ``denoise-gap``, ``rf-study``, ``seam-jump``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from ..checkpoint import load_checkpoint
from ..runtime import PRECISIONS
from ..stages.common import model_source
from ..studies import curve_compare, denoise_gap, rf_study, seams, speed, time_curve
from .options import add_model, add_overrides, command
from .params import load, study_inputs


def register(sub: argparse._SubParsersAction, add_common: Callable[..., None]) -> None:
    p = command(sub, "benchmark-speed", _benchmark_speed, common=False)
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

    p = command(sub, "time-curve", _time_curve, image=False)
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

    p = command(sub, "time-curve-compare", _time_curve_compare, image=False)
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

    p = command(sub, "seam-jump", _seam_jump, common=False)
    p.add_argument(
        "folders",
        nargs="+",
        metavar="FOLDER",
        help="samples folders, or folders above them (a benchmark's --out, results/): every samples.json whose "
        "samples record seams (the tile start) is scored",
    )
    p.add_argument("--blur", type=float, default=1.0, help="Gaussian blur (px) of the luma first (default: 1)")
    p.add_argument("--csv", help="also write the rows to this CSV file")

    p = command(sub, "denoise-gap", _denoise_gap, image=False)
    add_model(p, "a UNet checkpoint (results/<image>/train/model.pt)", required=True)
    p.add_argument("--out", default="results-denoise-gap", help="output folder (default: results-denoise-gap)")
    p.add_argument("--points", type=int, default=12, help="noise levels from t=0 to T-1 (default: 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-file", help="the training image (default: the path recorded in the checkpoint)")

    p = sub.add_parser("rf-study", help="receptive field vs diversity / copying (paper Table 4), small scale")
    p.add_argument("--image", required=True, help="training image file")
    p.add_argument("--out", default="results-rf-study", help="output folder (default: results-rf-study)")
    p.add_argument("--max-size", type=int, default=48, help="longer side of the training image (px)")
    p.add_argument("--steps", type=int, default=600, help="training steps per model")
    p.add_argument("--samples", type=int, default=6, help="samples per model")
    p.add_argument("--sample-steps", type=int, default=25, help="DDIM steps per sample")
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--configs", nargs="+", help="models as LEVELS:ENC:DEC (default: 1:1:2 2:1:2 3:1:2)")
    p.add_argument("--device", default="auto")
    p.add_argument("--tracking", action="store_true", help="log the study to MLflow (params' tracking section)")
    p.add_argument("--params", default="params.yaml", help="tracking settings are read from here when --tracking")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_rf_study)


def _benchmark_speed(args: argparse.Namespace) -> None:
    """time training iterations and denoising steps on this device"""
    speed.run_speed(
        preset=args.preset,
        params=args.params,
        overrides=args.overrides,
        height=args.height,
        width=args.width,
        train_batch=args.train_batch,
        sample_batches=args.sample_batches,
        iters=args.iters,
        device=args.device,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        variants=args.variants,
        json_path=args.json,
    )


def _time_curve(args: argparse.Namespace) -> None:
    """quality vs minutes of training: snapshots of one training per image,
    weight-free metrics, CSV + plot + MLflow"""
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


def _seam_jump(args: argparse.Namespace) -> None:
    """how visible the tile start's seams are: the jump across each recorded seam column over the
    sample's mean column jump (1 = like any column)"""
    if args.blur < 0:
        raise ValueError(f"--blur must be >= 0, got {args.blur}")
    rows = seams.score_tree(args.folders, args.blur)
    if not rows:
        raise ValueError(f"no samples with seams under {', '.join(args.folders)} (only the tile start records seams)")
    print(f"{'folder':60s} samples seams jump_mean jump_max")
    for r in rows:
        print(f"{r['folder']:60s} {r['samples']:7d} {r['seams']:5d} {r['jump_mean']:9.3f} {r['jump_max']:8.3f}")
    if args.csv:
        seams.write_csv(args.csv, rows)
        print(f"seam-jump: {args.csv}")


def _denoise_gap(args: argparse.Namespace) -> None:
    """a trained UNet vs the closed-form patch denoiser on its own noisy
    training image, per noise level: CSV + plot + MLflow"""
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
    image = str(load_checkpoint(source.path)["image"]["name"])
    files = denoise_gap.write_outputs(rows, args.out, {"checkpoint": source.label, "image": image})
    denoise_gap.log_mlflow(rows, files, params.section("tracking"), image)
    for r in rows:
        print(
            f"t={r['t']:4d}  UNet-vs-closed {r['rmse_gap']:.4f}  UNet {r['rmse_unet']:.4f}  "
            f"closed {r['rmse_closed']:.4f}"
        )
    print(f"denoise-gap: {files['csv']}, {files['plot']}")


def _rf_study(args: argparse.Namespace) -> None:
    configs = [rf_study.parse_config(c) for c in args.configs] if args.configs else None
    result = rf_study.run_study(
        args.image,
        out=args.out,
        max_size=args.max_size,
        steps=args.steps,
        num_samples=args.samples,
        sample_steps=args.sample_steps,
        base_channels=args.base_channels,
        batch_size=args.batch_size,
        configs=configs,
        device=args.device,
        tracking=args.tracking,
        params_path=args.params,
        progress=not args.no_progress,
    )
    print(rf_study.format_table(result["rows"]))
    print(f"rf-study -> {result['files']['csv']}, {result['files']['plot']}")
