"""Every file and folder the project writes is written here: atomically, with the usual permissions.

* :func:`atomic_write` / :func:`write_json`: a file is written to a temporary sibling and renamed
  onto its name (:func:`os.replace`), so readers never see a partial file; the temporaries a
  killed process left are removed by :func:`remove_stale_temps` (only that exact pattern).
* :func:`writing_dir`: an output folder (``sample``, ``manipulate`` and the one-off edits) is written
  complete into a hidden temporary sibling and swapped in. Replacing deletes the old folder, so it
  is done only for folders the project owns:

  - a folder that carries the owner marker :data:`MARKER` (written into every folder made here),
  - a missing or empty folder,
  - any folder when the caller passes ``force=True`` (``--force``), or for the project's own
    default output paths.

  Anything else (a user's folder given as ``--out``) raises :class:`OutputDirError` *before* any
  work is done. The new folder keeps the old folder's permissions (a new one gets the usual
  ``0o777 & ~umask``; ``mkdtemp`` alone would leave it owner-only). A stop signal removes the
  temporary folder on its way out; the temporary names carry the writer's pid and host
  (``.samples.tmp-<pid>@<host>-XXXXXXXX``), so that the next run removes those of a process that a
  ``kill -9`` ended (:func:`remove_stale_dirs`).
* :func:`atomic_link`: a file that is another's (hard link or copy), put in place the same way.
* :func:`sha256_file`: the content hash recorded for inputs and checkpoints.
* A write that finds the disk full (``ENOSPC``, or ``EDQUOT``) raises :class:`DiskFullError` naming
  the file and the free space, and leaves no temporary file.

Light on purpose (standard library only): every layer may import it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .signals import deferred

#: File written into every output folder this project creates; its presence marks the folder as replaceable.
MARKER = ".sindiffusion-output"


class OutputDirError(ValueError):
    """An output folder that must not be replaced; the message names it and says what to do."""


class DiskFullError(OSError):
    """A file could not be written for want of space (or quota); the message names it and the free space."""

    def __str__(self) -> str:
        return str(self.strerror)  # the message alone, without OSError's "[Errno 28]"


#: The errors of a write that found no space.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(path: Path, err: OSError) -> DiskFullError:
    """:class:`DiskFullError` for ``path`` (``err``: the ``ENOSPC``/``EDQUOT`` of the write)."""
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free there now"
    except OSError:
        free = "free space unknown"
    what = "the disk quota is exceeded" if err.errno == errno.EDQUOT else "the disk is full"
    return DiskFullError(
        err.errno,
        f"{path}: could not be written: {what} ({err.strerror}; {free}); free some space on that file "
        "system, then run the same command again",
    )


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
    raise OutputDirError(
        f"--out {out}: folder exists, is not empty and was not written by sindiffusion; "
        "pass --force to replace it (its contents are deleted) or choose a new path"
    )


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
    with deferred():  # a signal between the two renames would leave no folder at all
        if final.exists():
            old = final.with_name(f".{final.name}.old-{_writer()}")
            os.replace(final, old)
        os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def this_host() -> str:
    return socket.gethostname()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer() -> str:
    """``<pid>@<host>``: who writes a temporary folder (see :func:`remove_stale_dirs`)."""
    return f"{os.getpid()}@{this_host()}"


def remove_stale_dirs(out: str | Path) -> list[Path]:
    """Delete the temporary folders of ``out`` (``.<name>.tmp-<pid>@<host>-XXXXXXXX``, ``.<name>.old-<pid>@<host>``)
    whose writer was a process of this host that is gone (a ``kill -9``); returns them. Those of a
    live process, or of another host, are left alone."""
    out = Path(out)
    pattern = re.compile(
        rf"\.{re.escape(out.name)}\.(?:tmp-(?P<pid>\d+)@(?P<host>.+)-[a-z0-9_]{{8}}|old-(?P<opid>\d+)@(?P<ohost>.+))"
    )
    stale = []
    if out.parent.is_dir():
        for path in out.parent.iterdir():
            m = pattern.fullmatch(path.name)
            if not m or not path.is_dir() or path.is_symlink():
                continue
            pid, host = (m["pid"], m["host"]) if m["pid"] else (m["opid"], m["ohost"])
            if host == this_host() and not process_alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
                stale.append(path)
    return stale


@contextlib.contextmanager
def writing_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out``, on error it is removed.

    ``out`` is checked first, so a refused folder costs no temporary folder.
    """
    out = check_out_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_dirs(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-{_writer()}-"))
    try:
        yield tmp
        replace_dir(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------- files
def _temp_affixes(path: Path) -> tuple[str, str]:
    """Prefix and suffix of :func:`atomic_write`'s temporary files for ``path``."""
    return f".{path.name}.", ".tmp" + path.suffix


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temp_affixes(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    except OSError as err:
        if err.errno in DISK_FULL:
            raise disk_full(path, err) from err
        raise
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in DISK_FULL and not isinstance(err, DiskFullError):
            raise disk_full(path, err) from err
        raise
    return path


def atomic_link(src: str | Path, path: str | Path) -> Path:
    """Make ``path`` the same file as ``src``: a hard link (a copy where links fail, e.g. across file
    systems), put in place like :func:`atomic_write`, so ``path`` is never a partial file."""

    def link(tmp: Path) -> None:
        tmp.unlink()  # os.link will not overwrite the placeholder atomic_write made
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)

    return atomic_write(path, link)


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` of ``path`` left when its process was
    killed mid-write (``.<name>.XXXXXXXX.tmp<suffix>`` beside it; nothing else); returns them.

    Call it only where no other process writes ``path`` at the same time.
    """
    path = Path(path)
    prefix, suffix = _temp_affixes(path)
    if not path.parent.is_dir():
        return []
    stale = [
        p
        for p in path.parent.iterdir()
        if p.is_file()
        and p.name.startswith(prefix)
        and p.name.endswith(suffix)
        and len(p.name) == len(prefix) + 8 + len(suffix)
    ]  # mkstemp's 8 random characters
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_json(path: str | Path, data: Any) -> Path:
    """Atomic, pretty JSON; NaN/inf become null (DVC and browsers reject them)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    text = json.dumps(clean(data), indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
