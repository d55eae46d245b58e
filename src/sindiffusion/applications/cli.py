"""Command-line subcommands of the applications (loaded by :func:`sindiffusion.cli._load_extensions`).

* ``sindiffusion manipulate --image NAME`` runs every edit params.yaml lists for the image;
* ``sindiffusion outpaint|inpaint|paint|harmonize|edit|super-resolve|text|resize --checkpoint CKPT
  --out DIR ...`` runs one edit given by flags (interactive use).

Both call :mod:`sindiffusion.stages.manipulate` (same checks, same outputs). Bad input exits
with status 2 before anything is written.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

import dataclasses

from ..config import SAMPLERS, field_rules
from .config import EDIT_KINDS, KINDS, kind_options

#: One-off command name -> edit kind.
COMMANDS: dict[str, str] = {
    "outpaint": "outpaint",
    "inpaint": "inpaint",
    "paint": "paint",
    "harmonize": "harmonize",
    "edit": "edit",
    "super-resolve": "super_resolution",
    "text": "text",
    "resize": "resize",
}

HELP = {
    "outpaint": "extend the canvas on any side (eq. 6); the known region stays exactly the input",
    "inpaint": "regenerate the masked region of an image (eq. 6)",
    "paint": "turn a rough painting into a realistic image (ILVR + SDEdit, eq. 7)",
    "harmonize": "blend a pasted object into the image's style (ILVR in a mask, eq. 7)",
    "edit": "make a user edit (moved / copied regions) look natural (ILVR in a mask, eq. 7)",
    "super_resolution": "upscale the training image (or --input) by an integer --scale (ILVR)",
    "text": "text-guided generation with CLIP (eq. 5)",
    "resize": "generate at any size / aspect (panoramas), optionally keeping the layout (--factor)",
}

_FLAG_TYPES = {int: int, float: float, str: str}


def _add_edit_flags(p: argparse.ArgumentParser, kind: str) -> list[str]:
    """Flags for the keys of ``kind`` plus the sampling ones; returns the option keys added."""
    cls = EDIT_KINDS.kinds[kind]
    rules, defaults = field_rules(cls), {f.name: f.default for f in dataclasses.fields(cls)}
    keys = []
    for key in kind_options(cls):
        rule, default = rules[key], defaults[key]
        flag = "--" + key.replace("_", "-")
        required = default is dataclasses.MISSING
        if rule.type is bool:
            p.add_argument(flag, dest=key, action="store_true", default=None, help=rule.help)
        else:
            shown = "" if required or default is None else f" (default: {default})"
            p.add_argument(flag, dest=key, type=_FLAG_TYPES[rule.type], default=None,
                           required=False, help=rule.help + shown + (" [required]" if required else ""))
        keys.append(key)
    if kind in ("paint", "harmonize", "edit"):
        p.add_argument("--reference", dest="input", type=str, default=None, help="alias of --input")
    p.add_argument("--name", default=None, help="edit name recorded in the outputs (default: the command)")
    p.add_argument("--num", type=int, default=None, help="samples to draw (default: manipulate.num)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: manipulate.seed)")
    p.add_argument("--sampler", choices=SAMPLERS.names(), default=None, help="default: manipulate.sampler")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: manipulate.steps)")
    p.add_argument("--eta", type=float, default=None, help="DDIM eta (default: manipulate.eta)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="samples per batch")
    return keys + ["name", "num", "seed", "sampler", "steps", "eta", "batch_size"]


def register(sub: argparse._SubParsersAction, add_common: Callable[..., None]) -> None:
    from ..cli import add_force, image_name

    p = sub.add_parser("manipulate", help="run the edits params.yaml lists for an image (manipulate.edits)")
    add_common(p)
    p.add_argument("--checkpoint", help="checkpoint (default: results/IMAGE/train/model.pt)")
    p.add_argument("--out", help="output folder (default: results/IMAGE/manipulate)")
    add_force(p)
    p.set_defaults(func=_manipulate)

    for command, kind in COMMANDS.items():
        p = sub.add_parser(command, help=HELP[kind], description=HELP[kind])
        add_common(p, image=False)
        p.add_argument("--checkpoint", help="trained model.pt (default with --image: results/IMAGE/train/model.pt)")
        p.add_argument("--out", required=True, help="output folder (a folder sindiffusion wrote is replaced atomically)")
        add_force(p)
        p.add_argument("--image", default=None, type=image_name,
                       help="training image name: the checkpoint must be this image's (checked)")
        keys = _add_edit_flags(p, kind)
        p.set_defaults(func=_one_off, kind=kind, edit_keys=keys)


def _manipulate(args: argparse.Namespace) -> None:
    from ..cli import load
    from ..stages import manipulate

    summary = manipulate.run(load(args), args.image, args.checkpoint, args.out, progress=not args.no_progress,
                             force=args.force)
    out = summary.get("out", args.out)
    for e in summary["edits"]:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in e["metrics"].items() if k != "seconds_per_sample")
        print(f"{args.image}/{e['name']} ({e['kind']}, {e['size'][0]}x{e['size'][1]}): {metrics}")
    print(f"{args.image}: {len(summary['edits'])} edits -> {out}")


def _one_off(args: argparse.Namespace) -> None:
    from ..cli import load
    from ..stages import manipulate

    options: dict[str, Any] = {k: getattr(args, k) for k in args.edit_keys}
    summary = manipulate.run_single(load(args), args.kind, options, args.checkpoint, args.out, image=args.image,
                                    progress=not args.no_progress, force=args.force)
    e = summary["edits"][0]
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in e["metrics"].items() if k != "seconds_per_sample")
    print(f"{e['kind']} ({e['size'][0]}x{e['size'][1]}): {metrics} -> {args.out}/result.png")


assert set(COMMANDS.values()) == set(KINDS)
