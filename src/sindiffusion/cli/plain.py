"""A command for every pipeline stage that has no hand-written one.

A stage is a name in :data:`sindiffusion.config.STAGE_SECTIONS` and a module
``sindiffusion.stages.<name>`` with ``run(params, image) -> dict``. Where no command group registered
a command of that name, this group adds ``sindiffusion <name> --image NAME [--params] [--set]
[--no-progress]``: its help is the first line of the module's docstring, it runs ``run`` and prints
the returned dict as JSON. So a new stage needs no edit here (docs/extending.md, "A pipeline stage").
Registered after the other groups, so that a hand-written command (``sample``, ``evaluate``, ...) wins.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
from typing import Any, Callable

from ..config import STAGE_SECTIONS
from .params import load


def stage_module(name: str) -> Any:
    """``sindiffusion.stages.<name>``; an ImportError naming the stage and the module when it is missing."""
    module = f"sindiffusion.stages.{name}"
    try:
        # why: a stage is found by its name in STAGE_SECTIONS (a plug-in), not imported by this package
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:
            raise
        raise ImportError(
            f"stage {name!r} is in sindiffusion.config.STAGE_SECTIONS but has no module {module} "
            "(and no command group registers a command of that name)"
        ) from None


def register(sub: argparse._SubParsersAction, add_common: Callable[..., None]) -> None:
    for name in STAGE_SECTIONS:
        if name in sub.choices:
            continue
        module = stage_module(name)
        if not callable(getattr(module, "run", None)):
            raise ImportError(f"{module.__name__}: a stage module needs run(params, image) -> dict")
        doc = (inspect.getdoc(module) or name).splitlines()[0].rstrip(".")
        p = sub.add_parser(name, help=doc)
        add_common(p)
        p.set_defaults(func=_runner(module))


def _runner(module: Any) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        print(json.dumps(module.run(load(args), args.image), indent=1, sort_keys=True, default=str))

    return run
