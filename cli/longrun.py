"""What a long run shows while it runs: an estimate from a pilot, then progress.

The first :data:`PILOT_S` seconds of a run are its pilot: from the chunks done by then
:class:`LongRun` estimates the whole run, and when that is over :data:`LONG_S` it says so
on stderr (chunks, estimated time, where results go, that Ctrl-C keeps what was run)
and shows progress: a bar with its ETA on a terminal, a line every tenth otherwise.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack
from typing import Any

from pipefill.cli.app import err_console, progress_bar

#: seconds of a run before its estimate
PILOT_S = 1.0
#: estimated seconds from which a run says how long it will take
LONG_S = 60.0


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class LongRun(AbstractContextManager["LongRun"]):
    """A progress callback ``(done, total, elapsed)`` for a run of ``what`` (``tty``:
    stderr is a terminal); ``out`` names where results go; ``cap``: ``total`` is a cap."""

    def __init__(self, what: str, tty: bool, out: Any = None, cap: bool = False) -> None:
        self.what, self.tty, self.out, self.cap = what, tty, out, cap
        self.stack = ExitStack()
        self.update: Any = None
        self.long = False
        self.next_tenth = 1

    def __exit__(self, *exc: Any) -> None:
        self.stack.close()

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        if not self.long:
            if elapsed < PILOT_S or done <= 0:
                return
            est = elapsed * total / done
            if est <= LONG_S:
                return
            self._announce(done, total, elapsed, est)
        if self.update is not None:
            self.update(done, total)
        elif done * 10 >= self.next_tenth * total:
            self.next_tenth = done * 10 // max(total, 1) + 1
            err_console.print(f"{self.what}: {done:,} of {total:,} chunks, "
                              f"{duration(elapsed)} so far", markup=False)

    def _announce(self, done: int, total: int, elapsed: float, est: float) -> None:
        self.long = True
        where = f"; results to {self.out}" if self.out is not None else ""
        bound = "at most " if self.cap else ""
        err_console.print(
            f"{self.what}: {total:,} chunks will take {bound}about {duration(est)} "
            f"(pilot: {done:,} chunks in {elapsed:.1f} s){where}; Ctrl-C stops and "
            "keeps what has run", markup=False)
        if self.tty:
            self.update = self.stack.enter_context(progress_bar(self.what, True))
