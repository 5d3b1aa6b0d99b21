"""The trace table: one row per event, shared by the simulator, the executor and reports.

A trace is a pandas DataFrame with the columns of :data:`COLUMNS` plus run metadata
(a JSON-able dict). ``kind`` is ``span`` (start < = end), ``mark`` (an instant:
``input``, ``emit``, ``hard_cut``, ``drop``) or ``counter`` (``value`` holds a queue
depth or a byte count at ``start_ms``). Times are milliseconds from the run start.

Spans sit on a ``lane`` of their stage: ``compute`` (the stage's work: busy time),
``comm`` (transfers), or ``wait`` (:data:`WAIT_LANE`: what the stage's program waited
on, recorded by the SimPy engine, the executors and ``probe``'s ``stage.wait``; its
names are documented in :mod:`pipefill.traces.waits`). The wait lane is an
annotation: :attr:`Trace.spans` leaves it out, so no metric counts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas loads where a table is built (not to summarise a run online)
    import pandas as pd

#: column name -> pandas dtype. Order is the on-disk order.
COLUMNS: dict[str, str] = {
    "kind": "string",
    "name": "string",
    "stage": "string",
    "lane": "string",
    "session": "int64",
    "chunk": "int64",
    "call_id": "int64",
    "epoch": "int64",
    "step": "int64",
    "start_ms": "float64",
    "end_ms": "float64",
    "value": "float64",
}

KINDS = ("span", "mark", "counter")
#: the instant events a trace may carry
MARKS = ("input", "emit", "hard_cut", "drop")
#: lanes: ``compute`` runs phases, ``comm`` carries messages, ``queue`` holds counters,
#: ``wait`` holds what a stage waited on (annotations, not work: see below)
LANES = ("compute", "comm", "queue", "wait")
#: the wait lane: a span per blocking wait of a stage's program, named by what it waited
#: on (``get:Q``, ``slot:Q``, ``input``, ``context:C``, ``fill:Q``, ``drain:Q``, or
#: alternatives joined by ``|``; see :mod:`pipefill.traces.waits`). ``explain``
#: attributes idle time with it; metrics, ``diff`` and reports never count it as work.
WAIT_LANE = "wait"


class TraceError(ValueError):
    """A trace is malformed. ``field`` names the offending column or key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class Trace:
    """An event table plus the metadata needed to re-run and compare it.

    Invariants (checked by :func:`validate`): every column of :data:`COLUMNS` is present
    with its dtype; ``kind`` is one of :data:`KINDS`; ``end_ms >= start_ms``; marks and
    counters have ``end_ms == start_ms``; no NaN times.
    """

    events: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spans(self) -> pd.DataFrame:
        """Work spans (compute, comm, ...): every span but the wait lane's."""
        ev = self.events
        return ev[(ev["kind"] == "span") & (ev["lane"] != WAIT_LANE)]

    @property
    def waits(self) -> pd.DataFrame:
        """The wait lane: what each stage waited on, and when."""
        ev = self.events
        return ev[(ev["kind"] == "span") & (ev["lane"] == WAIT_LANE)]

    def marks(self, name: str) -> pd.DataFrame:
        ev = self.events
        return ev[(ev["kind"] == "mark") & (ev["name"] == name)]

    def counters(self, name: str) -> pd.DataFrame:
        ev = self.events
        return ev[(ev["kind"] == "counter") & (ev["name"] == name)]

    @property
    def source(self) -> str:
        return str(self.meta.get("source", "unknown"))


def empty_events() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in COLUMNS.items()})


def from_rows(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Build the event table from row tuples in :data:`COLUMNS` order, sorted stably by time."""
    import pandas as pd

    if not rows:
        return empty_events()
    df = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    return time_ordered(df.astype(COLUMNS))


def _check_times(df: pd.DataFrame) -> None:
    """Every time is a finite number: name the column, how many rows and the first one."""
    for col in ("start_ms", "end_ms"):
        bad = ~np.isfinite(df[col].to_numpy(dtype=float))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = f"{df['kind'].iloc[row]} {df['name'].iloc[row]!s} chunk {df['chunk'].iloc[row]}"
            raise TraceError(col, f"{int(bad.sum())} row(s) with no finite time (NaN, empty "
                             f"or infinite), first at data row {row + 1} ({what})")


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Check and coerce a table read from outside; raise :class:`TraceError` naming the field."""
    import pandas as pd

    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise TraceError(missing[0], f"missing column (a trace needs {', '.join(COLUMNS)})")
    df = df[list(COLUMNS)].copy()
    for col, dtype in COLUMNS.items():
        if dtype == "string":
            df[col] = df[col].astype("string")
            continue
        try:
            num = pd.to_numeric(df[col], errors="raise")
        except (ValueError, TypeError) as exc:
            raise TraceError(col, f"not numeric ({exc})") from None
        if dtype == "int64" and num.isna().any():
            raise TraceError(col, "empty values in an integer column")
        df[col] = num.astype(dtype)
    bad_kind = ~df["kind"].isin(KINDS)
    if bad_kind.any():
        raise TraceError("kind", f"{df['kind'][bad_kind].iloc[0]!r} is not one of {KINDS}")
    _check_times(df)
    if (df["end_ms"] < df["start_ms"]).any():
        raise TraceError("end_ms", "a span ends before it starts")
    instant = df["kind"] != "span"
    if (df.loc[instant, "end_ms"] != df.loc[instant, "start_ms"]).any():
        raise TraceError("end_ms", "marks and counters must have end_ms == start_ms")
    return time_ordered(df)


def time_ordered(df: pd.DataFrame) -> pd.DataFrame:
    """Rows stably by ``start_ms``: the order of a trace in memory (a streamed trace file
    is in recording order; sorted stably it is the same table as the run's in-memory one)."""
    start = df["start_ms"].to_numpy()
    if len(start) > 1 and not (start[1:] >= start[:-1]).all():
        df = df.iloc[np.argsort(start, kind="stable")]
    return df.reset_index(drop=True)
