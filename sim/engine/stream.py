"""Simulate without holding the trace: metrics online, the trace streamed to a file.

A run's rows go from the engine's recorder, block by block in recording order, to the
metrics' reducer and, with ``out``, to a :class:`~pipefill.traces.io.TraceWriter`, then
are dropped; memory stays flat with the run's length. The summary is the one
:func:`~pipefill.traces.metrics.compute_metrics` gives for the same run's trace, and the
file reads back as that trace.

The engine runs in segments of emits (:meth:`SimEngine.advance`): between two, the
recorder hands its rows on, ``progress`` hears how far the run is, a
:class:`~pipefill.sim.precision.Precision` target is judged at its checkpoints (a
precise run stops there) and Ctrl-C stops the run at once, keeping what was recorded
(``interrupted`` in the summary; the file is written with those rows).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipefill.sim.engine.core import SimEngine
from pipefill.sim.precision import Precision, Watch
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.meta import run_metadata
from pipefill.traces.metrics import reducer_for, summarize
from pipefill.traces.recorder import BLOCK_ROWS, Recorder, Row

#: wall time a segment aims at (progress and Ctrl-C land between segments)
SEGMENT_S = 0.25
#: (chunks emitted, chunks in the run, seconds so far)
Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class StreamedRun:
    """A simulated run's summary; ``rows`` the trace rows it had (written when ``out``)."""

    metrics: dict[str, Any]
    meta: dict[str, Any]
    rows: int
    out: Path | None


def simulate_summary(scenario: Scenario, out: str | Path | None = None,
                     block_rows: int = BLOCK_ROWS, precision: Precision | None = None,
                     progress: Progress | None = None) -> StreamedRun:
    """Simulate ``scenario``; summarise it online and stream its trace to ``out`` if given.

    A failure (a stall) leaves no file: the trace is written atomically or not at all.
    """
    run = scenario.run
    meta = run_metadata(scenario, source="sim", backend="simpy")
    reducer = reducer_for(meta, last_chunk=run.chunks - 1)
    watch = Watch(precision, run.chunks) if precision is not None else None
    reducer.on_emit = watch
    sinks: list[Callable[[list[Row]], object]] = [reducer.feed]

    def sink(rows: list[Row]) -> None:
        for take in sinks:
            take(rows)

    rec = Recorder(sink=sink, block_rows=block_rows)
    engine = SimEngine(scenario, rec)
    with contextlib.ExitStack() as stack:
        if out is not None:  # pyarrow only loads for a written trace
            from pipefill.traces.io import TraceWriter

            sinks.append(stack.enter_context(TraceWriter(out, meta)).write)
        interrupted = _drive(engine, rec, watch, progress)
        if watch is not None and watch.converged and not interrupted:
            _settle(engine, rec, reducer)
    del engine
    reducer.finish()
    metrics = summarize(reducer, meta, precision.rel if precision is not None else None)
    if interrupted:
        metrics["interrupted"] = True
    return StreamedRun(metrics, meta, len(rec), Path(out) if out is not None else None)


def _drive(engine: SimEngine, rec: Recorder, watch: Watch | None,
           progress: Progress | None) -> bool:
    """Run the engine segment by segment; True when Ctrl-C stopped it."""
    total = engine.sc.run.chunks
    t0 = time.perf_counter()
    step, done = 256, False
    engine.start()
    try:
        while not done:
            target = engine.emitted + step
            if watch is not None:
                target = min(target, watch.next)
            seg = time.perf_counter()
            done = engine.advance(target)
            with _deferred_interrupt():
                rec.flush()  # rows to the reducer (and the file): checkpoints judged there
            if watch is not None and watch.converged:
                break
            took = time.perf_counter() - seg
            step = int(min(max(step * SEGMENT_S / max(took, 1e-3), 64), step * 4))
            if progress is not None:
                progress(engine.emitted, total, time.perf_counter() - t0)
    except KeyboardInterrupt:
        with _deferred_interrupt():
            rec.flush()
        return True
    return False


def _settle(engine: SimEngine, rec: Recorder, reducer: Any) -> None:
    """A run stopped at a checkpoint goes on until the spans running at its last emit
    have ended (the window's busy time up to that emit is then final)."""
    done = False
    while not done and reducer.unsettled():
        done = engine.advance(engine.emitted + 1)
        rec.flush()


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C while rows are handed on (a half-written row group would be lost),
    then raise it."""
    got: list[int] = []
    try:
        old = signal.signal(signal.SIGINT, lambda sig, frame: got.append(sig))
    except ValueError:  # not the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got:
        raise KeyboardInterrupt
