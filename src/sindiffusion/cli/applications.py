"""The applications' commands (:mod:`sindiffusion.applications`).

* ``sindiffusion manipulate --image NAME`` runs every edit params.yaml lists for the image;
* ``sindiffusion <kind command> --checkpoint CKPT (or --model-uri URI) --out DIR ...`` (one per application:
  outpaint, inpaint, paint, harmonize, edit, super-resolve, text, resize, symmetric) runs one edit
  given by flags (interactive use).

Both call :mod:`sindiffusion.stages.manipulate` (same checks, same outputs). Bad input exits
with status 2 before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable

from ..applications.base import Application, applications
from ..applications.config import EditOptions
from ..config import field_rules
from ..stages import manipulate
from .options import add_force, add_model, image_name
from .params import load

_FLAG_TYPES = {int: int, float: float, str: str}
_COMMON = {f.name for f in dataclasses.fields(EditOptions)}


def _add_edit_flags(p: argparse.ArgumentParser, app: type[Application]) -> list[str]:
    """One flag per option of the application (types, choices and help from its options dataclass);
    returns the option keys added."""
    cls = app.Options
    rules, defaults = field_rules(cls), {f.name: f.default for f in dataclasses.fields(cls)}
    keys = []
    for key, rule in rules.items():
        if key == "kind":
            continue
        flag, default = "--" + key.replace("_", "-"), defaults[key]
        required = default is dataclasses.MISSING and key != "name"
        if key == "name":
            shown = " (default: the command)"
        elif key in _COMMON:
            shown = f" (default: manipulate.{key})"
        else:
            shown = "" if required or default is None else f" (default: {default})"
        text = rule.help + shown + (" [required]" if required else "")
        if rule.type is bool:
            p.add_argument(flag, dest=key, action="store_true", default=None, help=text)
        else:
            p.add_argument(flag, dest=key, type=_FLAG_TYPES[rule.type], default=None, choices=rule.choices, help=text)
        keys.append(key)
    if app.reference_alias:
        p.add_argument("--reference", dest="input", type=str, default=None, help="alias of --input")
    return keys


def register(sub: argparse._SubParsersAction, add_common: Callable[..., None]) -> None:
    p = sub.add_parser("manipulate", help="run the edits params.yaml lists for an image (manipulate.edits)")
    add_common(p)
    add_model(p, "checkpoint (default: results/IMAGE/train/model.pt)")
    p.add_argument("--out", help="output folder (default: results/IMAGE/manipulate)")
    add_force(p)
    p.set_defaults(func=_manipulate)

    for app in applications():
        p = sub.add_parser(app.command(), help=app.help, description=app.help)
        add_common(p, image=False)
        add_model(p, "trained model.pt (default with --image: results/IMAGE/train/model.pt)")
        p.add_argument(
            "--out", required=True, help="output folder (a folder sindiffusion wrote is replaced atomically)"
        )
        add_force(p)
        p.add_argument(
            "--image",
            default=None,
            type=image_name,
            help="training image name: the checkpoint must be this image's (checked)",
        )
        keys = _add_edit_flags(p, app)
        p.set_defaults(func=_one_off, kind=app.name, edit_keys=keys)


def _manipulate(args: argparse.Namespace) -> None:
    summary = manipulate.run(
        load(args),
        args.image,
        args.checkpoint,
        args.out,
        progress=not args.no_progress,
        force=args.force,
        model_uri=args.model_uri,
    )
    out = summary.get("out", args.out)
    for e in summary["edits"]:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in e["metrics"].items() if k != "seconds_per_sample")
        print(f"{args.image}/{e['name']} ({e['kind']}, {e['size'][0]}x{e['size'][1]}): {metrics}")
    print(f"{args.image}: {len(summary['edits'])} edits -> {out}")


def _one_off(args: argparse.Namespace) -> None:
    options: dict[str, Any] = {k: getattr(args, k) for k in args.edit_keys}
    summary = manipulate.run_single(
        load(args),
        args.kind,
        options,
        args.checkpoint,
        args.out,
        image=args.image,
        progress=not args.no_progress,
        force=args.force,
        model_uri=args.model_uri,
    )
    e = summary["edits"][0]
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in e["metrics"].items() if k != "seconds_per_sample")
    print(f"{e['kind']} ({e['size'][0]}x{e['size'][1]}): {metrics} -> {args.out}/result.png")
