"""``python -m sindiffusion.cli.gpu_check PART ...``: the parser of the parts of ``scripts/gpu-check.sh``
that run Python (:mod:`sindiffusion.studies.gpu_check` says what each part does)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ConfigError, parse_override
from ..studies.gpu_check import mark, merge, part_config, part_env, part_patch


def _sweep(text: str) -> list[str]:
    """``section.key=v1,v2,...`` -> ``["section.key=v1", "section.key=v2", ...]`` (argparse type: a
    malformed value is a usage error, exit 2). Each override is read by the one ``--set`` parser; the
    values themselves are range-checked when params load."""
    usage = f"{text!r}: expected section.key=value1,value2,..."
    key, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",")]
    if not sep or not all(items):
        raise argparse.ArgumentTypeError(usage)
    overrides = [f"{key.strip()}={v}" for v in items]
    for override in overrides:
        try:
            parse_override(override)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(f"{usage} ({err})") from None
    return overrides


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sindiffusion.cli.gpu_check")
    sub = ap.add_subparsers(dest="part", required=True)
    p = sub.add_parser("env")
    p.add_argument("out", type=Path)
    p.add_argument("--cpu-smoke", action="store_true")
    p = sub.add_parser("config")
    for a in ("out", "name", "params", "image"):
        p.add_argument(a)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--num", type=int, default=4)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    # repeatable: each --sweep adds its draws (one per value) after the previous one's
    p.add_argument("--sweep", type=_sweep, action="extend", default=[], metavar="KEY=V1,V2,...")
    p = sub.add_parser("patch")
    p.add_argument("out")
    p.add_argument("image")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--params", default="configs/patch.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p = sub.add_parser("mark")
    p.add_argument("out", type=Path)
    p.add_argument("name")
    p.add_argument("rc", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--raw-json", type=Path)
    p = sub.add_parser("merge")
    p.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    if args.part == "env":
        part_env(args.out, args.cpu_smoke)
    elif args.part == "config":
        part = part_config(
            Path(args.out),
            args.name,
            args.params,
            Path(args.image),
            args.minutes,
            args.num,
            args.overrides,
            sweep=args.sweep,
        )
        print(
            f"gpu-check {args.name}: {part['status']}" + (f" ({part.get('error')})" if part.get("error") else ""),
            file=sys.stderr,
        )
    elif args.part == "patch":
        part = part_patch(Path(args.out), Path(args.image), args.size, args.params, args.overrides)
        print(f"gpu-check patch: {part['status']}", file=sys.stderr)
    elif args.part == "mark":
        part = mark(args.out, args.name, args.rc, args.seconds, args.raw_json)
        print(part["status"])
    else:
        merge(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
