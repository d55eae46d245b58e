"""How a command stops on a signal: at any moment, cleanly, with an exit status a scheduler understands.

Slurm sends SIGTERM to every process of a job when it preempts it or reaches its time limit
(then SIGKILL after ``KillWait``, 30 s by default); ``sbatch --signal=USR1@120`` sends SIGUSR1
earlier. Either ends the command with :data:`EXIT_RESUMABLE` (75, "try again": ``slurm.conf
RequeueExit=75`` requeues the job), Ctrl-C with the usual 130; running the same command again
carries on. Two mechanisms, one exception (:class:`Preempted`):

* In the training loop, :class:`StopSignals` turns SIGTERM, SIGUSR1 and SIGINT into a flag that the
  loop checks after each step: it writes its resume checkpoint and raises :class:`Preempted`, so a
  resumed training loses no step.
* Everywhere else, from the command line's start-up to its exit (:func:`stop_on_signals`, put in
  place by ``cli.main`` before torch or MLflow is imported), SIGTERM and SIGUSR1 raise
  :class:`Preempted` at once wherever the main thread is. It unwinds like Ctrl-C's
  ``KeyboardInterrupt`` (it is no :class:`Exception`, so no ``except Exception`` swallows it): the
  temporary files and folders on the way are removed (:mod:`sindiffusion.artifacts`) and the stage's
  MLflow run ends KILLED (:func:`sindiffusion.tracking.stage_run`). Further signals are ignored while
  it unwinds. The few steps that must not be cut in half (creating or ending an MLflow run, swapping
  an output folder into place) run under :func:`deferred`, which holds a signal until they are done.

Standard library only: the command line imports it first, so that its handlers are in place early.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType
from typing import Any, Iterator

#: Signals that ask for a clean stop.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
#: The stop signals that :func:`stop_on_signals` turns into :class:`Preempted` (Ctrl-C keeps raising
#: ``KeyboardInterrupt``, as Python does).
SCHEDULER_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1)

#: Exit status after a clean stop on SIGTERM/SIGUSR1: EX_TEMPFAIL ("try again"); a cluster can
#: requeue it automatically (slurm.conf ``RequeueExit=75``). Ctrl-C exits with the usual 130.
EXIT_RESUMABLE = 75


class Preempted(BaseException):
    """Work stopped cleanly by a signal.

    ``signum``: the signal; ``step``: the last finished training step (``None`` outside the training
    loop); ``checkpoint``: where the resume state was written (``None`` if nothing was saved).
    A :class:`BaseException`, like ``KeyboardInterrupt``: code that handles errors with
    ``except Exception`` lets it through.
    """

    def __init__(self, signum: int, step: int | None = None, checkpoint: str | None = None) -> None:
        super().__init__(signum, step, checkpoint)
        self.signum, self.checkpoint = int(signum), checkpoint
        self.step = None if step is None else int(step)

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        if self.step is None:
            return f"stopped by {name} before it finished; run the same command again"
        where = f"resume checkpoint {self.checkpoint} written" if self.checkpoint else "no resume checkpoint written"
        return f"stopped by {name} after step {self.step}; {where}; run the same command again to resume"

    @property
    def exit_status(self) -> int:
        return 130 if self.signum == signal.SIGINT else EXIT_RESUMABLE


class _Stopping:
    """The process's stop state, shared by the handlers of this module."""

    def __init__(self) -> None:
        self.installed = False  # stop_on_signals is active
        self.signum: int | None = None  # the signal the process is stopping on
        self.depth = 0  # nested deferred() blocks
        self.pending: int | None = None  # a signal held by deferred()


_STATE = _Stopping()


def _say(text: str) -> None:
    """One line on stderr from a signal handler: ``os.write``, because ``print`` there can hit the
    stream while the interrupted code writes to it ("reentrant call")."""
    with contextlib.suppress(OSError):
        os.write(2, (text + "\n").encode())


def stopping() -> int | None:
    """The signal the process is stopping on (``None`` while none came)."""
    return _STATE.signum if _STATE.signum is not None else _STATE.pending


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    if stopping() is not None:  # the stop is under way: let it clean up
        return
    if _STATE.depth:
        _STATE.pending = signum
        _say(f"received {signal.Signals(signum).name}: stopping as soon as the current step is complete")
        return
    _STATE.signum = signum
    _say(f"received {signal.Signals(signum).name}: stopping")
    raise Preempted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While active, SIGTERM and SIGUSR1 raise :class:`Preempted` in the main thread (see the module
    docstring). Outside the main thread (where Python cannot install handlers) it does nothing. The
    previous handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_stop) for sig in SCHEDULER_SIGNALS}
    _STATE.__init__()
    _STATE.installed = True
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _STATE.installed = False


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal until the block is done, then raise :class:`Preempted` (also when the block
    failed: the signal asked to stop). Nests; a no-op without :func:`stop_on_signals`."""
    if not _STATE.installed:
        yield
        return
    _STATE.depth += 1
    try:
        yield
    except (Preempted, KeyboardInterrupt):
        _STATE.depth -= 1
        raise
    except BaseException as err:
        _STATE.depth -= 1
        _raise_pending(err)
        raise
    _STATE.depth -= 1
    _raise_pending(None)


def _raise_pending(cause: BaseException | None) -> None:
    if _STATE.depth == 0 and _STATE.pending is not None and _STATE.signum is None:
        _STATE.signum = _STATE.pending
        raise Preempted(_STATE.signum) from cause


class StopSignals:
    """Context manager: while active, SIGTERM/SIGUSR1/SIGINT set :attr:`signum` instead of killing.

    A second SIGINT (Ctrl-C twice) raises :class:`KeyboardInterrupt` at once. Outside the main
    thread (where Python cannot install handlers) it does nothing. The previous handlers are
    restored on exit.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            if signum != signal.SIGINT:
                _STATE.signum = signum  # the process is stopping: stop_on_signals ignores later signals
            _say(
                f"received {signal.Signals(signum).name}: finishing the current step, then saving the resume checkpoint"
            )

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
