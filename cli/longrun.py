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


#: a grid this large (points, or chunks of work) is timed by a pilot before it starts
PILOT_POINTS = 500
PILOT_WORK = 500_000
#: estimated seconds from which a sweep says how long it will take
LONG_SWEEP_S = 180.0


def sweep_notice(out: Any, workers: int) -> Any:
    """A ``planned`` hook for a sweep: a big grid is timed by a pilot, and when it will take
    more than :data:`LONG_SWEEP_S` it says so (points, time, where results go)."""

    def planned(points: list[Any], store: Any) -> None:
        from pipefill.sim.sweep.estimate import estimate
        from pipefill.sim.sweep.points import point_cost

        todo = [p for p in {p.key: p for p in points}.values() if p.key not in store.rows]
        if len(todo) < PILOT_POINTS and sum(point_cost(p) for p in todo) < PILOT_WORK:
            return
        est = estimate(todo, workers)
        if est.seconds <= LONG_SWEEP_S:
            return
        where = (f"results to {out} (finished tasks stream to {out}.parts/; --resume "
                 "runs the rest)" if out is not None else "no --out: results only at the end")
        bound = "at most " if est.at_most else ""
        err_console.print(
            f"sweep: {est.points:,} points to run ({est.simpy:,} on SimPy, the rest in "
            f"{est.structures} fast-path batch(es)): {bound}about {duration(est.seconds)} on "
            f"{est.workers} worker(s), from a pilot; {where}", markup=False)

    return planned


class SweepBar(AbstractContextManager["SweepBar"]):
    """One progress bar for a sweep: points done, and a remaining time from the work
    done (points differ in cost: the SimPy ones start first)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stack = ExitStack()
        self.bar: Any = None
        self.task: Any = None
        self.points = (0, 0)

    def __enter__(self) -> SweepBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = self.stack.enter_context(Progress(
                "sweep", BarColumn(), TextColumn("{task.fields[points]}"), TimeElapsedColumn(),
                TimeRemainingColumn(), console=err_console, transient=True))
            self.task = self.bar.add_task("sweep", total=None, points="")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stack.close()

    def progress(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, points=f"{done:,}/{total:,} points")

    def work(self, done: float, total: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=max(total, 1e-9))
