"""From parsed options to what a command runs on: the checked params (:func:`load`) and the keywords of
the studies over a folder of images (:func:`study_inputs`)."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from ..applications.config import validate_all_edits
from ..config import Params, check_written, load_params


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


def load(args: argparse.Namespace, extra: Sequence[str] = ()) -> Params:
    """The params of ``--params`` and ``--set``, every section and every edit checked (exit 2 on a bad value);
    a pipeline command refuses a file that lacks a section it reads (an empty or truncated file)."""
    params = load_params(args.params, list(args.overrides) + list(extra))
    check_written(params, getattr(args, "command", ""))
    if "manipulate" in params.raw:
        validate_all_edits(params.section("manipulate"), params.path)
    return params
