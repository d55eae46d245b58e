"""The options many subcommands share (``--image``, ``--params``, ``--set``, ``--force``, ``--checkpoint``
/ ``--model-uri``) and :func:`command`, which adds a subcommand with them. Light: no torch, so that
:mod:`sindiffusion.cli` can import it before its signal handlers are in place."""

from __future__ import annotations

import argparse
import inspect
from typing import Callable

from ..paths import check_image_name


def image_name(value: str) -> str:
    """argparse ``type`` of ``--image``: :func:`sindiffusion.paths.check_image_name` (argparse exits 2)."""
    try:
        return check_image_name(value, where="")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_overrides(p: argparse.ArgumentParser, help: str) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help=help)


def add_common(p: argparse.ArgumentParser, image: bool = True) -> None:
    """``--params``, ``--set``, ``--image`` (only if ``image``) and ``--no-progress``."""
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


def command(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], None],
    image: bool = True,
    common: bool = True,
) -> argparse.ArgumentParser:
    """Subcommand ``name``, run as ``func(args)``, with ``func``'s docstring as its help and the
    :func:`add_common` options (``--image`` only if ``image``; none of them if not ``common``)."""
    p = sub.add_parser(name, help=" ".join((inspect.getdoc(func) or "").split()))
    if common:
        add_common(p, image=image)
    p.set_defaults(func=func)
    return p
