"""Subcommands of the evaluation subsystem, added to ``sindiffusion`` by :func:`register`.

* ``sindiffusion evaluate --image NAME [--weights-dir DIR]``: metrics of one image's samples.
* ``sindiffusion weights status|fetch``: where the deep metrics' checkpoints are expected;
  download them (on a machine with internet).
* ``sindiffusion benchmark --images-dir DIR [--arm NAME=PARAMS ...]``: preprocess -> train ->
  sample -> evaluate of every arm over a folder of images, plus published baselines, into one
  table, a plot and contact sheets; ``benchmark-merge`` joins partial runs; ``benchmark-compare``
  puts arms of different runs side by side.
* ``sindiffusion rf-study --image FILE``: receptive field vs diversity/copying (paper Table 4).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable


def register(sub: argparse._SubParsersAction, add_common: Callable) -> None:
    p = sub.add_parser("evaluate", help="score one image's samples with every registered metric (docs/benchmark.md)")
    add_common(p)
    p.add_argument(
        "--weights-dir",
        help="folder holding the pretrained checkpoints "
        "(default: evaluate.weights_dir, else $TORCH_HOME/hub/checkpoints)",
    )
    p.add_argument("--samples", help="samples folder (default: results/IMAGE/samples)")
    p.add_argument("--out", help="metrics JSON (default: results/IMAGE/evaluate/metrics.json)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("weights", help="pretrained weights of the deep metrics: status / fetch")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    from .weights import WEIGHTS

    q = wsub.add_parser("status", help="where each checkpoint is expected and whether it is there")
    q.add_argument("--weights-dir", help="folder to check (default: $TORCH_HOME/hub/checkpoints)")
    q.add_argument("--verify", action="store_true", help="also check each file's SHA-256 prefix")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_weights_status)
    q = wsub.add_parser("fetch", help="download the checkpoints (needs internet)")
    q.add_argument("--weights-dir", help="where to put them (default: $TORCH_HOME/hub/checkpoints)")
    q.add_argument("--only", nargs="+", choices=sorted(WEIGHTS), help="only these checkpoints")
    q.add_argument("--force", action="store_true", help="download again even if present")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=_weights_fetch)

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


def _evaluate(args: argparse.Namespace) -> None:
    from ..cli import load
    from ..stages import evaluate

    evaluate.run(load(args), args.image, weights_dir=args.weights_dir, samples_dir=args.samples, out=args.out)


def _weights_status(args: argparse.Namespace) -> None:
    from .weights import weights_status

    rows = weights_status(args.weights_dir, verify=args.verify)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "present" if r["present"] else "MISSING"
        if r.get("hash_ok") is False:
            state = "present but SHA-256 MISMATCH (not the published file)"
        elif r.get("hash_ok"):
            state = "present, SHA-256 ok"
        print(f"{r['name']:<13} {state}\n  used by: {r['used_by']}\n  path:    {r['path']}\n  url:     {r['url']}")


def _weights_fetch(args: argparse.Namespace) -> None:
    from .weights import fetch_weights

    got = fetch_weights(args.only, args.weights_dir, force=args.force, progress=not args.no_progress)
    for name, path in got.items():
        print(f"{name}: {path}")


def _benchmark(args: argparse.Namespace) -> None:
    from ..benchmark import arms, places
    from ..cli import study_inputs

    chosen = [arms.parse_arm(a) for a in args.arms]
    sizes = arms.parse_sizes(args.sizes) if args.sizes else ()
    options = {"limit": args.limit, "baselines": args.baselines, "weights_dir": args.weights_dir, "sizes": sizes}
    result = places.run_benchmark(args.images_dir, arms=chosen, **options, **study_inputs(args))
    print(
        f"benchmark: {len(result['images'])} images x {len(result['settings']['arms'])} arms -> "
        f"{result['files']['markdown']}, {result['files']['csv']}, {result['files']['plot']}, {args.out}/sheets/"
    )


def _benchmark_merge(args: argparse.Namespace) -> None:
    from ..benchmark import places, report

    result = report.merge_results(args.folders, args.out)
    places.log_to_mlflow(result, Path(args.out))
    print(report.render_markdown(result))
    print(f"benchmark-merge: {len(result['images'])} images -> {result['files']['markdown']}")


def _benchmark_compare(args: argparse.Namespace) -> None:
    from ..benchmark import compare, places, report

    result = compare.compare_results([compare.parse_pick(p) for p in args.picks], args.out)
    places.log_to_mlflow(result, Path(args.out))
    print(report.render_markdown(result))
    print(
        f"benchmark-compare: {len(result['settings']['arms'])} arms on {len(result['images'])} images -> "
        f"{result['files']['markdown']}"
    )


def _rf_study(args: argparse.Namespace) -> None:
    from ..benchmark import rf_study

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
