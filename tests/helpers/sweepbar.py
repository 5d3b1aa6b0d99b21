"""A sweep progress bar that presses Ctrl-C once a task has finished (CLI interrupt tests)."""

from __future__ import annotations

from typing import Any


class BarThatInterrupts:
    """Stands in for :class:`pipefill.cli.longrun.SweepBar`: the first progress report
    after a finished point raises KeyboardInterrupt, as Ctrl-C would there."""

    def __init__(self, enabled: bool) -> None:
        del enabled

    def __enter__(self) -> BarThatInterrupts:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def progress(self, done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    def work(self, done: float, total: float) -> None:
        return None
