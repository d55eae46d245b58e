"""Stopping long work cleanly on a signal (Slurm preemption and time limits, ``kill``, Ctrl-C).

Slurm sends SIGTERM to every process of a job when it preempts it or reaches its time limit
(then SIGKILL after ``KillWait``, 30 s by default); ``sbatch --signal=USR1@120`` sends SIGUSR1
earlier. :class:`StopSignals` turns SIGTERM, SIGUSR1 and SIGINT into a flag that a training
loop checks after each step: it then writes its resume checkpoint and raises
:class:`Preempted`, which the command line turns into exit status :data:`EXIT_RESUMABLE`
(SIGTERM, SIGUSR1) or 130 (Ctrl-C). Running the same command again resumes with no step lost.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

#: Signals that ask for a clean stop.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

#: Exit status after a clean stop on SIGTERM/SIGUSR1: EX_TEMPFAIL ("try again"); a cluster can
#: requeue it automatically (slurm.conf ``RequeueExit=75``). Ctrl-C exits with the usual 130.
EXIT_RESUMABLE = 75


class Preempted(Exception):
    """Work stopped cleanly by a signal after writing its resume state.

    ``signum``: the signal; ``step``: the last finished step; ``checkpoint``: where the resume
    state was written (``None`` if nothing could be saved).
    """

    def __init__(self, signum: int, step: int, checkpoint: str | None = None) -> None:
        super().__init__(signum, step, checkpoint)
        self.signum, self.step, self.checkpoint = int(signum), int(step), checkpoint

    def __str__(self) -> str:
        where = f"resume checkpoint {self.checkpoint} written" if self.checkpoint else "no resume checkpoint written"
        return (f"stopped by {signal.Signals(self.signum).name} after step {self.step}; {where}; "
                "run the same command again to resume")

    @property
    def exit_status(self) -> int:
        return 130 if self.signum == signal.SIGINT else EXIT_RESUMABLE


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
            print(f"received {signal.Signals(signum).name}: finishing the current step, then saving the resume "
                  "checkpoint", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
