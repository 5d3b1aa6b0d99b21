"""Trace rows across ranks: mesh ranks ship their rows to rank0 inside link frames.

Rank0's clock is the reference. The mesh leader estimates its clock offset to rank0 at
start-up (:func:`pipefill.exec.dist.rendezvous.clock_offset`) and shifts every row it ships by
it, so rank0 merges rows without any clock synchronisation. Rows travel as JSON lists
(never pickled) and are validated on receipt like any other frame content.
"""

from __future__ import annotations

import math
from typing import Any

from pipefill.exec.dist.wire import WireError
from pipefill.traces.recorder import Recorder
from pipefill.traces.schema import COLUMNS, KINDS

#: column index of each time in a row (recorder order = traces.schema.COLUMNS)
_START, _END, _VALUE = 9, 10, 11
_STR_COLS = 4
_INT_COLS = range(4, 9)


class DrainRecorder(Recorder):
    """A Recorder whose new rows can be taken (``drain``) or added from elsewhere.

    Contract: every row is drained at most once; ``extend`` appends rows that were
    recorded on another rank, already in this rank's clock.
    """

    def __init__(self) -> None:
        super().__init__()
        self._drained = 0

    def drain(self, offset_ms: float) -> list[list[Any]]:
        """Rows recorded since the last drain, shifted by ``offset_ms``, as JSON lists."""
        with self._lock:
            rows = self._rows[self._drained:]
            self._drained = len(self._rows)
        return [_to_json(r, offset_ms) for r in rows]

    def extend(self, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            self._rows.extend(rows)


def _to_json(row: tuple[Any, ...], offset_ms: float) -> list[Any]:
    out = list(row)
    out[_START] += offset_ms
    out[_END] += offset_ms
    out[_VALUE] = None if math.isnan(row[_VALUE]) else row[_VALUE]
    return out


def rows_from_json(raw: Any) -> list[tuple[Any, ...]]:
    """Validate shipped rows into recorder tuples; raise WireError on anything odd."""
    if not isinstance(raw, list):
        raise WireError("rows must be a list")
    return [_row(r) for r in raw]


def _row(r: Any) -> tuple[Any, ...]:
    if not isinstance(r, list) or len(r) != len(COLUMNS):
        raise WireError(f"a trace row needs {len(COLUMNS)} fields: {str(r)[:80]}")
    if not all(isinstance(v, str) for v in r[:_STR_COLS]) or r[0] not in KINDS:
        raise WireError(f"bad text fields in trace row {str(r)[:80]}")
    if not all(isinstance(r[i], int) and not isinstance(r[i], bool) for i in _INT_COLS):
        raise WireError(f"bad integer fields in trace row {str(r)[:80]}")
    times = [r[_START], r[_END]]
    if not all(isinstance(t, int | float) and math.isfinite(t) for t in times) \
            or r[_END] < r[_START]:
        raise WireError(f"bad times in trace row {str(r)[:80]}")
    value = r[_VALUE]
    if value is not None and not isinstance(value, int | float):
        raise WireError(f"bad value in trace row {str(r)[:80]}")
    return (*r[:_START], float(r[_START]), float(r[_END]),
            float("nan") if value is None else float(value))
