"""Checks a measured trace must pass before metrics mean anything.

Simulated traces are consistent by construction; traces recorded by users' code (the
probe), merged from ranks or imported from a profiler may not be. :func:`check_measured`
raises :class:`TraceError` naming the first problem:

- a compute span or an ``input``/``emit`` mark without a chunk id (``chunk < 0``);
- two spans on one stage's lane that overlap (a stage runs one thing at a time; a
  batched call, several items over the very same interval, is allowed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipefill.traces.schema import Trace, TraceError

#: overlap (ms) below which two spans count as back to back (float noise of clocks)
OVERLAP_EPS_MS = 1e-6
#: events that must carry a chunk id
CHUNKED_MARKS = ("input", "emit")


def check_chunk_ids(events: pd.DataFrame) -> None:
    spans = (events["kind"] == "span") & (events["lane"] == "compute")
    marks = (events["kind"] == "mark") & events["name"].isin(CHUNKED_MARKS)
    bad = events[(spans | marks) & (events["chunk"] < 0)]
    if len(bad):
        row = bad.iloc[0]
        raise TraceError("chunk", f"{len(bad)} events have no chunk id, first a {row['kind']} "
                         f"{row['name']!r} on {row['stage']} at {row['start_ms']:.3f} ms "
                         "(pass chunk=k)")


def _first_overlap(grp: pd.DataFrame) -> tuple[pd.Series, pd.Series] | None:
    iv = grp.sort_values(["start_ms", "end_ms"], kind="stable")
    start, end = iv["start_ms"].to_numpy(), iv["end_ms"].to_numpy()
    if len(iv) < 2:
        return None
    reach = np.maximum.accumulate(end)
    same = (start[1:] == start[:-1]) & (end[1:] == end[:-1])
    over = (start[1:] < reach[:-1] - OVERLAP_EPS_MS) & ~same
    if not over.any():
        return None
    i = int(np.argmax(over)) + 1
    prev = int(np.argmax(end[:i] > start[i] + OVERLAP_EPS_MS))
    return iv.iloc[prev], iv.iloc[i]


def check_lanes(events: pd.DataFrame) -> None:
    spans = events[(events["kind"] == "span") & (events["lane"] == "compute")]
    for (stage, lane), grp in spans.groupby(["stage", "lane"], sort=True):
        hit = _first_overlap(grp)
        if hit is None:
            continue
        a, b = hit
        raise TraceError("start_ms", f"overlapping spans on {stage}/{lane}: {a['name']} of "
                         f"chunk {a['chunk']} [{a['start_ms']:.3f}, {a['end_ms']:.3f}] ms and "
                         f"{b['name']} of chunk {b['chunk']} [{b['start_ms']:.3f}, "
                         f"{b['end_ms']:.3f}] ms (a stage runs one thing at a time: give "
                         "concurrent work its own stage or lane)")


def check_measured(trace: Trace) -> Trace:
    """Raise :class:`TraceError` on the first problem (see the module docstring)."""
    check_chunk_ids(trace.events)
    check_lanes(trace.events)
    return trace
