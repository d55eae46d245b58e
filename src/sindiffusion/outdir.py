"""Output folders that are replaced as a whole (``sample``, ``manipulate`` and the one-off edits).

A folder is written complete into a hidden temporary sibling and swapped in with
:func:`os.replace`, so readers never see a half-written one. Replacing deletes the old folder,
so it is done only for folders the project owns:

* a folder that carries the owner marker :data:`MARKER` (written into every folder made here),
* a missing or empty folder,
* any folder when the caller passes ``force=True`` (``--force``), or for the project's own
  default output paths.

Anything else (a user's folder given as ``--out``) raises :class:`OutputDirError` *before* any
work is done. The new folder keeps the old folder's permissions (a new one gets the usual
``0o777 & ~umask``; ``mkdtemp`` alone would leave it owner-only).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

#: File written into every output folder this project creates; its presence marks the folder as replaceable.
MARKER = ".sindiffusion-output"


class OutputDirError(ValueError):
    """An output folder that must not be replaced; the message names it and says what to do."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_out_dir(out: str | Path, force: bool = False) -> Path:
    """Raise :class:`OutputDirError` unless ``out`` may be replaced (see the module docstring)."""
    out = Path(out)
    resolved = out.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise OutputDirError(f"--out {out}: is the working directory or one of its parents; choose a new folder")
    if not out.exists() and not out.is_symlink():
        return out
    if out.is_symlink() or not out.is_dir():
        raise OutputDirError(f"--out {out}: exists and is not a folder; choose a new path")
    if force or (out / MARKER).is_file() or not any(out.iterdir()):
        return out
    raise OutputDirError(f"--out {out}: folder exists, is not empty and was not written by sindiffusion; "
                         "pass --force to replace it (its contents are deleted) or choose a new path")


def replace_dir(tmp: Path, final: Path, force: bool = False) -> None:
    """Swap a fully written ``tmp`` folder into place (never leaves a half-written ``final``).

    Re-checks ``final`` (it may have changed since :func:`check_out_dir`) and gives ``tmp``
    the permissions of the folder it replaces.
    """
    check_out_dir(final, force)
    (tmp / MARKER).write_text("written by sindiffusion; this folder is replaced when the command runs again\n")
    mode = final.stat().st_mode & 0o7777 if final.is_dir() else 0o777 & ~_umask()
    os.chmod(tmp, mode)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def writing_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out``, on error it is removed.

    ``out`` is checked first, so a refused folder costs no temporary folder.
    """
    out = check_out_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        yield tmp
        replace_dir(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
