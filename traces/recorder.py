"""Collects trace rows from any backend (SimPy process or executor thread)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from pipefill.traces.schema import Trace, from_rows


@dataclass(frozen=True)
class Tag:
    """Identity of the work an event belongs to (the protocol fields of DESIGN.md)."""

    session: int = 0
    chunk: int = -1
    call_id: int = -1
    epoch: int = 0
    step: int = -1


NO_TAG = Tag()


class Recorder:
    """Append-only, thread-safe list of trace rows; :meth:`trace` freezes it into a Trace."""

    def __init__(self) -> None:
        self._rows: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def _add(self, kind: str, name: str, stage: str, lane: str, tag: Tag,
             start: float, end: float, value: float) -> None:
        row = (kind, name, stage, lane, tag.session, tag.chunk, tag.call_id, tag.epoch,
               tag.step, float(start), float(end), float(value))
        with self._lock:
            self._rows.append(row)

    def span(self, name: str, stage: str, lane: str, tag: Tag, start: float, end: float,
             value: float = float("nan")) -> None:
        """``value``: optional payload of the span (a ``send`` span's bytes), NaN if none."""
        self._add("span", name, stage, lane, tag, start, end, value)

    def mark(self, name: str, stage: str, tag: Tag, at: float) -> None:
        self._add("mark", name, stage, "compute", tag, at, at, float("nan"))

    def counter(self, name: str, stage: str, at: float, value: float) -> None:
        self._add("counter", name, stage, "queue", NO_TAG, at, at, value)

    def __len__(self) -> int:
        return len(self._rows)

    def trace(self, meta: dict[str, Any]) -> Trace:
        with self._lock:
            rows = list(self._rows)
        return Trace(from_rows(rows), dict(meta))
