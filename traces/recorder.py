"""Collects trace rows from any backend (SimPy process or executor thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas loads only when a trace is frozen: `bound` never needs it
    from pipefill.traces.schema import Trace


@dataclass(frozen=True)
class Tag:
    """Identity of the work an event belongs to (the protocol fields of DESIGN.md)."""

    session: int = 0
    chunk: int = -1
    call_id: int = -1
    epoch: int = 0
    step: int = -1

    def at_step(self, step: int) -> Tag:
        """The same work at denoise step ``step`` (cheaper than ``dataclasses.replace``)."""
        return Tag(self.session, self.chunk, self.call_id, self.epoch, step)


NO_TAG = Tag()


Row = tuple[Any, ...]
#: rows a streaming recorder holds before it hands them to its sink
BLOCK_ROWS = 16_384


class Recorder:
    """Append-only, thread-safe list of trace rows; :meth:`trace` freezes it into a Trace.

    With a ``sink`` the recorder streams instead: every ``block_rows`` rows (and at
    :meth:`flush`) it hands the rows so far, in recording order, to ``sink`` and forgets
    them, so a long run's memory does not grow with its length. Such a recorder has no
    :meth:`trace`: its rows went to the sink (a trace file, the metrics' reducer).
    """

    def __init__(self, sink: Callable[[list[Row]], None] | None = None,
                 block_rows: int = BLOCK_ROWS) -> None:
        self._rows: list[Row] = []
        self._lock = threading.Lock()
        self._sink = sink
        self._block = block_rows
        self._count = 0

    def _add(self, kind: str, name: str, stage: str, lane: str, tag: Tag,
             start: float, end: float, value: float) -> None:
        row = (kind, name, stage, lane, tag.session, tag.chunk, tag.call_id, tag.epoch,
               tag.step, float(start), float(end), float(value))
        with self._lock:
            self._rows.append(row)
            full = self._sink is not None and len(self._rows) >= self._block
        if full:
            self.flush()

    def flush(self) -> None:
        """Hand the rows held so far to the sink (streaming recorders only)."""
        if self._sink is None:
            return
        with self._lock:
            rows, self._rows = self._rows, []
            self._count += len(rows)
            # under the lock: blocks reach the sink in recording order
            self._sink(rows)

    def span(self, name: str, stage: str, lane: str, tag: Tag, start: float, end: float,
             value: float = float("nan")) -> None:
        """``value``: optional payload of the span (a ``send`` span's bytes), NaN if none."""
        self._add("span", name, stage, lane, tag, start, end, value)

    def mark(self, name: str, stage: str, tag: Tag, at: float) -> None:
        self._add("mark", name, stage, "compute", tag, at, at, float("nan"))

    def counter(self, name: str, stage: str, at: float, value: float) -> None:
        self._add("counter", name, stage, "queue", NO_TAG, at, at, value)

    def counters(self, at: float, samples: tuple[tuple[str, str, float], ...]) -> None:
        """Several ``(name, stage, value)`` counter samples taken at one instant, in order."""
        at = float(at)
        rows = [("counter", name, stage, "queue", 0, -1, -1, 0, -1, at, at, float(value))
                for name, stage, value in samples]
        with self._lock:
            self._rows.extend(rows)
            full = self._sink is not None and len(self._rows) >= self._block
        if full:
            self.flush()

    def __len__(self) -> int:
        return self._count + len(self._rows)

    def trace(self, meta: dict[str, Any]) -> Trace:
        from pipefill.traces.schema import Trace, from_rows

        if self._sink is not None:
            raise RuntimeError("a streaming recorder hands its rows to its sink, not a trace")
        with self._lock:
            rows = list(self._rows)
        return Trace(from_rows(rows), dict(meta))
