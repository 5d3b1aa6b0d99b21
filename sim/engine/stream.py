"""Simulate without holding the trace: metrics online, the trace streamed to a file.

A run's rows go from the engine's recorder, block by block in recording order, to the
metrics' reducer and, with ``out``, to a :class:`~pipefill.traces.io.TraceWriter`, then
are dropped; memory stays flat with the run's length (per chunk, the reducer keeps a few
floats). The summary is the one :func:`~pipefill.traces.metrics.compute_metrics` gives
for the same run's trace, and the file reads back as that trace.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipefill.sim.engine.core import SimEngine
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.io import TraceWriter
from pipefill.traces.metrics import summarize
from pipefill.traces.recorder import BLOCK_ROWS, Recorder, Row
from pipefill.traces.reduce import TraceReducer


@dataclass(frozen=True)
class StreamedRun:
    """A simulated run's summary; ``rows`` the trace rows it had (written when ``out``)."""

    metrics: dict[str, Any]
    meta: dict[str, Any]
    rows: int
    out: Path | None


def simulate_summary(scenario: Scenario, out: str | Path | None = None,
                     block_rows: int = BLOCK_ROWS) -> StreamedRun:
    """Simulate ``scenario``; summarise it online and stream its trace to ``out`` if given.

    A failure (a stall) leaves no file: the trace is written atomically or not at all.
    """
    reducer = TraceReducer(scenario.run.warmup, scenario.run.chunks)
    sinks: list[Callable[[list[Row]], object]] = [reducer.feed]

    def sink(rows: list[Row]) -> None:
        for take in sinks:
            take(rows)

    rec = Recorder(sink=sink, block_rows=block_rows)
    engine = SimEngine(scenario, rec)
    meta = engine.metadata()
    with contextlib.ExitStack() as stack:
        if out is not None:
            sinks.append(stack.enter_context(TraceWriter(out, meta)).write)
        engine.execute()
        rec.flush()
    # the engine's pre-drawn costs and SimPy's process cycles are done with: free them
    # before the summary's window arrays are built (a long run's memory peak)
    del engine
    gc.collect()
    reducer.finish()
    return StreamedRun(summarize(reducer, meta), meta, len(rec),
                       Path(out) if out is not None else None)
