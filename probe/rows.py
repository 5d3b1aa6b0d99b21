"""Trace rows as the probe keeps them: plain tuples, bounded in memory, spilled to disk.

A row is a tuple in the column order of :data:`pipefill.traces.schema.COLUMNS` (kind,
name, stage, lane, session, chunk, call_id, epoch, step, start_ms, end_ms, value), built
from plain Python values only, so recording needs neither pandas nor torch. When more
than ``limit`` rows are held, the held rows are pickled to a spill file and dropped from
memory; :meth:`RowStore.rows` reads every spilled block back, in order.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
from typing import Any

#: the trace columns, in schema order (checked against traces.schema by the tests)
ROW_COLUMNS = ("kind", "name", "stage", "lane", "session", "chunk", "call_id", "epoch",
               "step", "start_ms", "end_ms", "value")
#: rows held in memory before a spill (about 200 bytes each)
DEFAULT_LIMIT = 200_000

Row = tuple[Any, ...]


class RowStore:
    """Append-only row list with a memory bound.

    Invariants: :meth:`rows` returns every appended row exactly once, in append order;
    at most ``limit`` rows are in memory after any :meth:`append`. ``append`` is safe
    from any thread (``list.append`` is atomic; the spill takes a lock).
    """

    def __init__(self, limit: int = DEFAULT_LIMIT, spill_dir: str | None = None) -> None:
        if limit < 1:
            raise ValueError(f"limit: must be >= 1 (got {limit})")
        self.limit = limit
        self._spill_dir = spill_dir
        self._held: list[Row] = []
        self._spills: list[str] = []
        self._lock = threading.Lock()
        self.spilled_rows = 0

    def append(self, row: Row) -> None:
        self._held.append(row)
        if len(self._held) > self.limit:
            self._spill()

    def _spill(self) -> None:
        with self._lock:
            if len(self._held) <= self.limit:
                return
            block, self._held = self._held, []
            fd, path = tempfile.mkstemp(prefix="pipefill-probe-", suffix=".spill",
                                        dir=self._spill_dir)
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(block, fh, protocol=pickle.HIGHEST_PROTOCOL)
            self._spills.append(path)
            self.spilled_rows += len(block)

    def __len__(self) -> int:
        return self.spilled_rows + len(self._held)

    def rows(self) -> list[Row]:
        """Every row recorded so far (spilled blocks first, then the held ones)."""
        with self._lock:
            out: list[Row] = []
            for path in self._spills:
                with open(path, "rb") as fh:
                    out.extend(pickle.load(fh))
            out.extend(self._held)
            return out

    def close(self) -> None:
        """Remove the spill files (the rows they held are gone afterwards)."""
        with self._lock:
            for path in self._spills:
                if os.path.exists(path):
                    os.unlink(path)
            self._spills = []
