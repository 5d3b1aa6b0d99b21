"""Memory in flight per queue and per stage, read back from a trace's counters.

Both backends record, at every queue change, the queue's depth (counter named after
the queue, ``stage`` = the queue's receiving stage) immediately followed by the total
``bytes_in_flight``. The change in the total therefore belongs to the queue counted
just before it, which gives each queue's bytes over time without a counter of its own;
a queue's bytes are charged to its receiving stage (the buffer that holds them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipefill.traces.schema import Trace

TOTAL = "bytes_in_flight"


@dataclass
class _Ledger:
    """Bytes per queue and per receiving stage, with their peaks, as changes arrive."""

    stage_of: dict[str, str] = field(default_factory=dict)
    queue: dict[str, float] = field(default_factory=dict)
    stage: dict[str, float] = field(default_factory=dict)
    peak_q: dict[str, float] = field(default_factory=dict)
    peak_s: dict[str, float] = field(default_factory=dict)

    def add(self, q: str, delta: float) -> None:
        dst = self.stage_of[q]
        self.queue[q] = self.queue.get(q, 0.0) + delta
        self.stage[dst] = self.stage.get(dst, 0.0) + delta
        self.peak_q[q] = max(self.peak_q.get(q, 0.0), self.queue[q])
        self.peak_s[dst] = max(self.peak_s.get(dst, 0.0), self.stage[dst])


def memory_in_flight(trace: Trace) -> dict[str, Any]:
    """``{"peak_bytes": int, "queues": {q: peak}, "stages": {stage: peak}}``, or ``{}``
    when the trace has no byte counters (then the reason is the caller's to report)."""
    ev = trace.events
    counters = ev[ev["kind"] == "counter"]
    totals = counters.loc[counters["name"] == TOTAL, "value"]
    if totals.empty:
        return {}
    book, total, last = _Ledger(), 0.0, None
    for name, stage, value in zip(counters["name"], counters["stage"], counters["value"],
                                  strict=True):
        if name != TOTAL:
            last = str(name)
            book.stage_of[last] = str(stage)
        elif last is not None:
            book.add(last, float(value) - total)
            total = float(value)
    queues = {q: int(book.peak_q.get(q, 0.0)) for q in sorted(book.stage_of)}
    stages = {s: int(book.peak_s.get(s, 0.0)) for s in sorted(set(book.stage_of.values()))}
    return {"peak_bytes": int(totals.max()), "queues": queues, "stages": stages}
