"""Lock files: one process at a time in a results folder, or through a store's creation.

:func:`exclusive` holds an ``fcntl.flock`` on a lock file. The kernel releases it when its process
ends, however it ends (``kill -9`` included), so a lock is never stale: a lock file that names a gone
process is simply taken over. The holder writes ``pid <pid> on <host> since <time>`` into the file,
which the refusal quotes. Where the file system has no ``flock`` (some network mounts answer
``ENOLCK``), the recorded holder decides instead: a live process of this host holds the lock; a gone
one, or another host's record older than a day, does not.

Standard library only: every layer may import it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import sys
import time
from pathlib import Path
from typing import Iterator

from .artifacts import process_alive, this_host

#: A holder recorded by another host counts as stale after this long (file systems without flock only).
FOREIGN_STALE_S = 24 * 3600


class LockedError(ValueError):
    """The lock is held by another process; the message names the lock's folder, the holder and what to do."""


def _holder(text: str) -> tuple[int, str] | None:
    m = re.match(r"pid (\d+) on (\S+)", text)
    return (int(m[1]), m[2]) if m else None


@contextlib.contextmanager
def exclusive(path: str | Path, refusal: str = "", wait: bool = False) -> Iterator[None]:
    """Hold the lock file ``path`` while the block runs.

    ``wait``: block until it is free; otherwise raise :class:`LockedError` at once: ``"<folder>:
    <refusal> (held by pid P on HOST since T; lock file PATH)"``. The file is removed on release,
    and its folder too when this call made it and it is empty (a refused input leaves nothing).
    """
    path = Path(path)
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, refusal, wait)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {this_host()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the flock is released: a waiter then finds the file gone and retries
        os.close(fd)
        for folder in made:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break


def _acquire(path: Path, refusal: str, wait: bool) -> int:
    """An open descriptor of ``path`` that holds its lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise LockedError(_refusal(path, refusal, _read(fd))) from None
            except OSError as err:
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                _check_record(path, refusal, _read(fd))  # no flock here: trust the recorded holder
                return fd
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its last holder removed while this process waited for it
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 512, 0).decode(errors="replace").strip()
    return ""


def _refusal(path: Path, refusal: str, record: str) -> str:
    who = f"held by {record}" if record else "held by another process"
    return f"{path.parent}: {refusal or 'locked'} ({who}; lock file {path})"


def _check_record(path: Path, refusal: str, record: str) -> None:
    holder = _holder(record)
    if holder is None or holder[0] == os.getpid():
        return
    pid, host = holder
    if host == this_host():
        if process_alive(pid):
            raise LockedError(_refusal(path, refusal, record))
        return
    if time.time() - path.stat().st_mtime < FOREIGN_STALE_S:
        raise LockedError(_refusal(path, refusal, record))
    print(f"WARNING: {path}: taking over the lock of {record} (no file locks here; over a day old)", file=sys.stderr)
