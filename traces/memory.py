"""Memory in flight per queue and per stage, read back from a trace's counters.

Both backends record, at every queue change, the queue's depth (counter named after
the queue, ``stage`` = the queue's receiving stage) immediately followed by the total
``bytes_in_flight``. The change in the total therefore belongs to the queue counted
just before it, which gives each queue's bytes over time without a counter of its own;
a queue's bytes are charged to its receiving stage (the buffer that holds them). The
bookkeeping is :class:`pipefill.traces.reduce.TraceReducer`'s, done in its one pass.
"""

from __future__ import annotations

from typing import Any

from pipefill.traces.reduce import TOTAL, TraceReducer, record_order
from pipefill.traces.schema import Trace


def memory_of(red: TraceReducer) -> dict[str, Any]:
    """``{"peak_bytes": int, "queues": {q: peak}, "stages": {stage: peak}}``, or ``{}``
    when the rows had no byte counters (then the reason is the caller's to report)."""
    if TOTAL not in red.counters:
        return {}
    queues = {q: int(red.peak_queue_bytes.get(q, 0.0)) for q in sorted(red.counter_stage)}
    stages = {s: int(red.peak_stage_bytes.get(s, 0.0))
              for s in sorted(set(red.counter_stage.values()))}
    return {"peak_bytes": int(red.counters[TOTAL].peak), "queues": queues, "stages": stages}


def memory_in_flight(trace: Trace) -> dict[str, Any]:
    """:func:`memory_of` a whole trace."""
    return memory_of(TraceReducer(1).feed(record_order(trace.events)).finish())
