"""The benchmark against the published samples (:mod:`sindiffusion.benchmark`): ``benchmark --images-dir
DIR [--arm NAME=PARAMS ...]`` runs preprocess -> train -> sample -> evaluate of every arm over a folder of
images, plus published baselines, into one table, a plot and contact sheets; ``benchmark-merge`` joins
partial runs; ``benchmark-compare`` puts arms of different runs side by side."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from ..benchmark import arms, compare, places, report
from .params import study_inputs


def register(sub: argparse._SubParsersAction, add_common: Callable) -> None:
    p = sub.add_parser("benchmark", help="run arms (configurations) over a folder of images; one table with baselines")
    add_common(p, image=False)
    p.add_argument("--images-dir", required=True, help="folder of training images (e.g. ../shared/data/places50)")
    p.add_argument(
        "--images",
        metavar="SELECTION",
        help="only these images: names and numeric ranges, e.g. 1-13 or 1,2,5 (natural order)",
    )
    p.add_argument("--limit", type=int, help="only the first N (selected) images")
    p.add_argument(
        "--arm",
        dest="arms",
        action="append",
        default=[],
        metavar="NAME=PARAMS[:section.key=value,...]",
        help="a configuration to benchmark (repeatable), e.g. --arm unet=params.yaml "
        "--arm patch=configs/patch.yaml; --set values apply to every arm first. "
        "Default: one arm 'sindiffusion' = --params",
    )
    p.add_argument(
        "--out",
        default="results-benchmark",
        help="results folder (default: results-benchmark); a rerun into it skips the images already done",
    )
    p.add_argument(
        "--baselines",
        help="folder with one subfolder per method (e.g. singan/, gpnn/) of published "
        "samples named like the training images; resized to the training image and scored",
    )
    p.add_argument(
        "--sizes",
        metavar="HxW,...",
        help="draw every arm at these sizes, as factors of the training image (height x width), e.g. "
        "1x1,1x1.5,1x2,2x1; each size is an arm NAME@HxW sharing the arm's trained model; sheets get "
        "one row per size (the baselines stay 1x). Default: each arm's own sample.scale_h/w",
    )
    p.add_argument("--weights-dir", help="pretrained checkpoints for the deep metrics")
    p.set_defaults(func=_benchmark)

    p = sub.add_parser(
        "benchmark-merge", help="join partial benchmark runs (e.g. images 1-13 and 14-25) into one table"
    )
    p.add_argument("folders", nargs="+", help="--out folders of `sindiffusion benchmark` runs of the same arms")
    p.add_argument("--out", required=True, help="folder for the merged tables, plot and contact sheets")
    p.set_defaults(func=_benchmark_merge)

    p = sub.add_parser(
        "benchmark-compare",
        help="arms of different benchmark runs side by side on the images they share (e.g. a recipe change "
        "measured in its own run against the old default)",
    )
    p.add_argument(
        "picks",
        nargs="+",
        metavar="[LABEL=]RUN[:ARM]",
        help="a finished benchmark's --out folder and one of its arms (default: all), optionally renamed, "
        "e.g. old=bench-25:unet new=bench-train:unet-minsnr",
    )
    p.add_argument("--out", required=True, help="folder for the tables, plot and contact sheets")
    p.set_defaults(func=_benchmark_compare)


def _benchmark(args: argparse.Namespace) -> None:
    chosen = [arms.parse_arm(a) for a in args.arms]
    sizes = arms.parse_sizes(args.sizes) if args.sizes else ()
    options = {"limit": args.limit, "baselines": args.baselines, "weights_dir": args.weights_dir, "sizes": sizes}
    result = places.run_benchmark(args.images_dir, arms=chosen, **options, **study_inputs(args))
    print(
        f"benchmark: {len(result['images'])} images x {len(result['settings']['arms'])} arms -> "
        f"{result['files']['markdown']}, {result['files']['csv']}, {result['files']['plot']}, {args.out}/sheets/"
    )


def _benchmark_merge(args: argparse.Namespace) -> None:
    result = report.merge_results(args.folders, args.out)
    places.log_to_mlflow(result, Path(args.out))
    print(report.render_markdown(result))
    print(f"benchmark-merge: {len(result['images'])} images -> {result['files']['markdown']}")


def _benchmark_compare(args: argparse.Namespace) -> None:
    result = compare.compare_results([compare.parse_pick(p) for p in args.picks], args.out)
    places.log_to_mlflow(result, Path(args.out))
    print(report.render_markdown(result))
    print(
        f"benchmark-compare: {len(result['settings']['arms'])} arms on {len(result['images'])} images -> "
        f"{result['files']['markdown']}"
    )
