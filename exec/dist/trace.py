"""Trace rows across ranks: every rank records its own, rank0 merges them on its clock.

Clocks. Every rank times its events on its own clock (ms since its runtime started).
Each other rank runs a clock handshake with rank0 at the start of the run and another
at its end (:func:`pipefill.exec.dist.rendezvous.sync_clock`, the probe's
:class:`~pipefill.traces.clock.SyncPoint` mechanism); rank0 maps a rank's times onto
its own clock by the line through the two points (offset and drift), with the very
code ``pipefill merge`` runs (:func:`pipefill.traces.merge.merge_ranks`). A run that
failed has no end handshake: its ranks are aligned by the start offset alone.

Transport. A group leader with a link to rank0 ships its rows to rank0 inside link
frames as it goes (so a leader that dies still leaves what it recorded), in its own
clock; every rank hands over the rest at its end (:mod:`pipefill.exec.dist.gather`).
Rows travel as JSON lists (never pickled) and are validated on receipt like any other
frame content.

Lanes (what keeps the metrics counting a tensor-parallel call once). A group leader's
rows are its stage's: its compute spans on the ``compute`` lane, its queue counters,
sends and marks. A mesh follower runs the same program in lockstep with its leader
(every call is a collective over the mesh), so its calls are the leader's calls, not
more work of the stage. Its compute spans keep the stage's name and go on their own
lane, ``compute@r<rank>`` (:func:`rank_lane`): metrics count only the ``compute`` lane
as a stage's busy time (DESIGN.md trace format, :mod:`pipefill.traces.reduce`), so the
stage's busy time, OverlapScore, bubbles and idle time are the leader's, once per call,
while the trace still shows every rank's span of each call (Chrome export: one thread
per lane under the stage). The follower's marks, counters and waits repeat the
leader's program and are dropped.
"""

from __future__ import annotations

import math
from typing import Any

from pipefill.exec.dist.wire import WireError
from pipefill.traces.recorder import Recorder
from pipefill.traces.schema import COLUMNS, KINDS, WAIT_LANE

#: column index of each field in a row (recorder order = traces.schema.COLUMNS)
_KIND, _LANE, _START, _END, _VALUE = 0, 3, 9, 10, 11
_STR_COLS = 4
_INT_COLS = range(4, 9)
Row = tuple[Any, ...]


class DrainRecorder(Recorder):
    """A Recorder whose new rows can be taken (``drain``).

    Contract: every row is drained at most once, in this rank's own clock.
    """

    def __init__(self) -> None:
        super().__init__()
        self._drained = 0

    def take(self) -> list[Row]:
        """Rows recorded since the last take (or drain)."""
        with self._lock:
            rows = self._rows[self._drained:]
            self._drained = len(self._rows)
        return rows

    def drain(self) -> list[list[Any]]:
        """Rows recorded since the last drain (or take), as JSON lists."""
        return [to_json(r) for r in self.take()]


def rank_lane(lane: str, rank: int) -> str:
    """The lane of a mesh follower's spans: ``compute`` -> ``compute@r2``."""
    return f"{lane}@r{rank}"


def follower_rows(rows: list[Row], rank: int) -> list[Row]:
    """A mesh follower's rows as the merged trace keeps them (module docstring):
    its spans, each on its rank's own lane; its marks and counters are the leader's."""
    return [(*r[:_LANE], rank_lane(r[_LANE], rank), *r[_LANE + 1:]) for r in rows
            if r[_KIND] == "span" and r[_LANE] != WAIT_LANE]


def to_json(row: Row) -> list[Any]:
    out = list(row)
    out[_VALUE] = None if math.isnan(row[_VALUE]) else row[_VALUE]
    return out


def rows_from_json(raw: Any) -> list[Row]:
    """Validate shipped rows into recorder tuples; raise WireError on anything odd."""
    if not isinstance(raw, list):
        raise WireError("rows must be a list")
    return [_row(r) for r in raw]


def _row(r: Any) -> Row:
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
