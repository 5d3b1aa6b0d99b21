"""Trace rows as the probe keeps them: plain tuples, bounded in memory, spilled to disk.

A row is a tuple in the column order of :data:`pipefill.traces.schema.COLUMNS` (kind,
name, stage, lane, session, chunk, call_id, epoch, step, start_ms, end_ms, value), built
from plain Python values only, so recording needs neither pandas nor torch. When more
than ``limit`` rows are held, the held rows are written to a spill file and dropped from
memory; :meth:`RowStore.rows` reads every spilled block back, in order. Spill files are
Arrow IPC (pyarrow, imported at the first spill): plain typed columns, so a spill file
someone else could write can at worst be unreadable, never run code in this process
(pickle could).
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

#: the trace columns, in schema order (checked against traces.schema by the tests)
ROW_COLUMNS = ("kind", "name", "stage", "lane", "session", "chunk", "call_id", "epoch",
               "step", "start_ms", "end_ms", "value")
#: the Arrow type of each column (pyarrow's names), in ROW_COLUMNS order
ROW_TYPES = ("string",) * 4 + ("int64",) * 5 + ("float64",) * 3
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
        if spill_dir is not None and not os.path.isdir(spill_dir):
            raise ValueError(f"spill_dir: {spill_dir} is not a directory")
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
            n = len(block)
            fd, path = tempfile.mkstemp(prefix="pipefill-probe-", suffix=".arrow",
                                        dir=self._spill_dir)
            with os.fdopen(fd, "wb") as fh:
                _write_block(fh, block[:n])
            self._spills.append(path)
            self.spilled_rows += n
            # a thread that read the old list just before the swap appends to it now:
            # keep those rows (list slice assignment is atomic)
            self._held[:0] = block[n:]

    def __len__(self) -> int:
        return self.spilled_rows + len(self._held)

    def rows(self) -> list[Row]:
        """Every row recorded so far (spilled blocks first, then the held ones)."""
        with self._lock:
            out: list[Row] = []
            for path in self._spills:
                out.extend(_read_block(path))
            out.extend(self._held)
            return out

    def close(self) -> None:
        """Remove the spill files (the rows they held are gone afterwards)."""
        with self._lock:
            for path in self._spills:
                if os.path.exists(path):
                    os.unlink(path)
            self._spills = []


def _write_block(fh: Any, block: list[Row]) -> None:
    """``block`` as one Arrow IPC record batch of typed columns."""
    import pyarrow as pa

    cols = list(zip(*block, strict=True))
    arrays = [pa.array(col, type=pa.type_for_alias(t)) for col, t in zip(cols, ROW_TYPES,
                                                                        strict=True)]
    batch = pa.RecordBatch.from_arrays(arrays, names=list(ROW_COLUMNS))
    with pa.ipc.new_file(fh, batch.schema) as writer:
        writer.write_batch(batch)


def _read_block(path: str) -> list[Row]:
    """The rows of one spill file, as tuples in column order."""
    import pyarrow as pa

    with pa.memory_map(path) as source:
        table = pa.ipc.open_file(source).read_all()
    return list(zip(*(table.column(c).to_pylist() for c in ROW_COLUMNS), strict=True))
