"""Progress for people and for logs.

Interactive runs get a tqdm bar. Under Snakemake/Slurm the stages run with ``--no-progress``
and stderr goes to ``logs/<image>/<stage>.log``: there a bar is useless (carriage returns, or
nothing at all), so :class:`ProgressLog` writes one plain line every ~5 % instead::

    train: 60/1200 (5%) loss 0.0421 | 1.23 it/s | elapsed 0:00:49 | ETA 0:15:27

so ``tail -f logs/<image>/train.log`` shows where a run is.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _hms(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressLog:
    """Plain progress lines at every ``every`` fraction of ``total`` (and at the end).

    Same interface as the tqdm bars it replaces: ``update(n)``, ``set_postfix(**fields)``,
    ``set_postfix_str(text)``, ``close()``. ``it/s`` and the ETA count only this process's
    updates (a resumed run starts at ``initial``).
    """

    def __init__(
        self,
        desc: str,
        total: int,
        initial: int = 0,
        unit: str = "it",
        every: float = 0.05,
        stream: TextIO | None = None,
    ) -> None:
        self.desc, self.total, self.n, self.unit = desc, max(int(total), 0), int(initial), unit
        self.start_n = self.n
        self.stream = stream
        self.step = max(1, round(self.total * every)) if self.total else 1
        self.next_at = (self.n // self.step + 1) * self.step
        self.t0 = time.perf_counter()
        self.postfix = ""
        self.closed = False
        self.emitted_n = self.n

    def set_postfix(self, refresh: bool = False, **fields: Any) -> None:
        self.postfix = " ".join(f"{k} {v}" for k, v in fields.items())

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def line(self) -> str:
        """The current progress line (no newline)."""
        elapsed = time.perf_counter() - self.t0
        done = self.n - self.start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.n / self.total if self.total else 100.0
        parts = [
            f"{self.desc}: {self.n}/{self.total} ({pct:.0f}%)" + (f" {self.postfix}" if self.postfix else ""),
            f"{rate:.3g} {self.unit}/s",
            f"elapsed {_hms(elapsed)}",
            f"ETA {_hms(eta) if eta == eta else '?'}",
        ]
        return " | ".join(parts)

    def _emit(self) -> None:
        print(self.line(), file=self.stream or sys.stderr, flush=True)
        self.emitted_n = self.n

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.closed:
            return
        if self.n >= self.next_at or self.n >= self.total:
            self._emit()
            self.next_at = (self.n // self.step + 1) * self.step
            self.closed = self.n >= self.total

    def close(self) -> None:
        """Print a last line if the run stopped between two marks (e.g. a wall-clock budget)."""
        if not self.closed and self.n != self.emitted_n:
            self._emit()
        self.closed = True


def make_progress(desc: str, total: int, enabled: bool, initial: int = 0, unit: str = "it") -> Any:
    """A tqdm bar when ``enabled`` (interactive), else a :class:`ProgressLog` for the log file."""
    if enabled:
        # why: tqdm only when a progress bar is shown
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
    return ProgressLog(desc, total, initial=initial, unit=unit)
