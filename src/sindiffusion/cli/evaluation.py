"""The evaluation commands: ``evaluate --image NAME [--weights-dir DIR]`` (metrics of one image's samples)
and ``weights status|fetch`` (where the deep metrics' checkpoints are expected; download them on a
machine with internet)."""

from __future__ import annotations

import argparse
import json
from typing import Callable

from ..evaluation.weights import WEIGHTS, fetch_weights, weights_status
from ..stages import evaluate
from .params import load


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


def _evaluate(args: argparse.Namespace) -> None:
    evaluate.run(load(args), args.image, weights_dir=args.weights_dir, samples_dir=args.samples, out=args.out)


def _weights_status(args: argparse.Namespace) -> None:
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
    got = fetch_weights(args.only, args.weights_dir, force=args.force, progress=not args.no_progress)
    for name, path in got.items():
        print(f"{name}: {path}")
