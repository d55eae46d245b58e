"""The ``sindiffusion`` command line: every argparse parser of the package, one module per command group.

* :mod:`.stages`: ``preprocess``, ``train``, ``log-model``, ``sample``, ``images``, ``demo-image``;
* :mod:`.studies`: the research commands ``benchmark-speed``, ``time-curve``, ``time-curve-compare``,
  ``denoise-gap``, ``rf-study``, ``seam-jump`` (:mod:`sindiffusion.studies`);
* :mod:`.evaluation`: ``evaluate``, ``weights status|fetch``;
* :mod:`.benchmark`: ``benchmark``, ``benchmark-merge``, ``benchmark-compare`` (:mod:`sindiffusion.benchmark`);
* :mod:`.applications`: ``manipulate`` and one command per edit kind;
* :mod:`.plain`: a command for every stage of ``STAGE_SECTIONS`` that none of the above registers;
* :mod:`.gpu_check`: ``python -m sindiffusion.cli.gpu_check``, the parts of ``scripts/gpu-check.sh``.

Parsing only: each subcommand calls a stage or a library function. Every stage takes ``--image NAME``
(a file ``data/images/NAME.*``) and derives its inputs and outputs from :mod:`sindiffusion.paths`;
``--params FILE`` and ``--set section.key=value`` choose the configuration. Errors exit with status 2
(bad input/config) or 1 (runtime failure) and a one-line message naming the file or key.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Callable, Sequence

from ..signals import Preempted, stop_on_signals
from .options import add_common

#: The command groups, in the order of ``sindiffusion --help``: each module's ``register(subparsers,
#: add_common)`` adds its subcommands. They are loaded by :func:`_load_extensions` when :func:`main` runs,
#: after its signal handlers are in place (the groups import torch).
GROUPS = (  # the order of `sindiffusion --help`: the product first, the research studies last
    "sindiffusion.cli.stages",
    "sindiffusion.cli.evaluation",
    "sindiffusion.cli.benchmark",
    "sindiffusion.cli.applications",
    "sindiffusion.cli.plain",  # after the others: a stage without a hand-written command
    "sindiffusion.cli.studies",
)

#: The ``register`` functions of the loaded groups: ``fn(subparsers, add_common)``.
_EXTENSIONS: list[Callable[[argparse._SubParsersAction, Callable], None]] = []


def _load_extensions() -> None:
    """Import every module of :data:`GROUPS` (a group missing from this checkout is left out) and
    keep its ``register`` once (``main()`` may run many times in one process)."""
    for module in GROUPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        if mod.register not in _EXTENSIONS:
            _EXTENSIONS.append(mod.register)


def build_parser() -> argparse.ArgumentParser:
    """The whole parser: one subcommand per command of the loaded groups (:func:`_load_extensions`)."""
    parser = argparse.ArgumentParser(prog="sindiffusion", description="Learn a diffusion model from one image.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for hook in _EXTENSIONS:
        hook(sub, add_common)
    return parser


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
    # why: these modules import torch, which must come after main()'s signal handlers
    from ..artifacts import DiskFullError

    # why: these modules import torch, which must come after main()'s signal handlers
    from ..checkpoint import CheckpointError
    from ..config import ConfigError
    from ..data.io import ImageError

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
