"""One pass over trace rows in recording order, keeping only what the metrics need.

:class:`TraceReducer` is how every summary is computed: :func:`pipefill.traces.metrics.
compute_metrics` feeds it a whole trace, and a long simulation feeds it the rows as they
are recorded, so a run of a million chunks is summarised without ever holding its trace.
What it keeps is per chunk (a few floats) or per stage and queue (a few accumulators).

Contract on the rows (what a recorder produces; :func:`record_order` restores it for a
trace read back in time order): a span arrives when it ends, a mark or counter at its
time, so rows come in non-decreasing order of their *record time* (``end_ms`` of a span,
``start_ms`` otherwise); the spans of one batched call are consecutive; compute spans of
one stage do not partially overlap (a stage runs one thing at a time; the items of a
batched call share one interval). Under it, the union of a stage's busy time up to an
instant ``x`` is settled exactly by the pieces that arrive after ``x`` was registered.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipefill.traces.schema import COLUMNS, WAIT_LANE

TOTAL = "bytes_in_flight"
#: a row, as the recorder writes it (the trace columns in order)
Row = tuple[Any, ...]


class ChunkArray:
    """A float per chunk index (grows on demand), combined with min, max or sum."""

    def __init__(self, fill: float, size: int = 256) -> None:
        self.fill = fill
        self.a = np.full(max(size, 1), fill)
        self.n = 0

    def _room(self, k: int) -> None:
        if k >= len(self.a):
            grown = np.full(max(len(self.a) * 3 // 2, k + 1), self.fill)
            grown[: len(self.a)] = self.a
            self.a = grown
        self.n = max(self.n, k + 1)

    def add(self, k: int, v: float) -> None:
        self._room(k)
        self.a[k] += v

    def low(self, k: int, v: float) -> None:
        self._room(k)
        if not v >= self.a[k]:  # NaN fill: the first value wins
            self.a[k] = v

    def high(self, k: int, v: float) -> None:
        self._room(k)
        if not v <= self.a[k]:
            self.a[k] = v

    def take(self, chunks: np.ndarray) -> np.ndarray:
        """Values at ``chunks`` (the fill where a chunk never got one)."""
        out = np.full(len(chunks), self.fill)
        ok = (chunks >= 0) & (chunks < self.n)
        out[ok] = self.a[chunks[ok]]
        return out


class Settle:
    """B(x): a cumulative quantity at one instant ``x``, settled by pieces that straddle it.

    Registered at the row that marks ``x`` with the total up to then; a later busy piece
    [a, e] adds its part before ``x``.
    """

    __slots__ = ("value", "x")

    def __init__(self, x: float, total: float) -> None:
        self.x, self.value = x, total

    def piece(self, a: float, e: float) -> None:
        if a < self.x:
            self.value += min(e, self.x) - a


@dataclass
class StageBusy:
    """Union of one stage's compute spans, as disjoint pieces, with settled instants."""

    last_end: float = -np.inf
    total: float = 0.0
    at: dict[Any, Settle] = field(default_factory=dict)

    def span(self, s: float, e: float) -> None:
        a = max(s, self.last_end)
        self.last_end = max(self.last_end, e)
        if e > a:
            self.total += e - a
            for settle in self.at.values():
                settle.piece(a, e)

    def mark(self, key: Any, x: float) -> None:
        # pieces already in are all over by x (record order): only later ones straddle it
        self.at[key] = Settle(x, self.total)

    def between(self, k0: Any, k1: Any) -> float:
        return self.at[k1].value - self.at[k0].value if k0 in self.at and k1 in self.at else 0.0


@dataclass
class CounterState:
    """A counter's max and its time integral, read at registered instants."""

    first: float
    last_t: float
    last_v: float
    peak: float
    integral: float = 0.0
    at: dict[Any, tuple[float, float]] = field(default_factory=dict)

    def sample(self, t: float, v: float) -> None:
        self.integral += self.last_v * (t - self.last_t)
        self.last_t, self.last_v = t, v
        self.peak = max(self.peak, v)

    def mark(self, key: Any, x: float) -> None:
        # samples are recorded at their time: none can come before x any more
        self.at[key] = (x, self.integral + self.last_v * (x - self.last_t))

    def mean(self, k0: Any, k1: Any) -> float | None:
        if k0 not in self.at or k1 not in self.at:
            return None
        (t0, i0), (t1, i1) = self.at[k0], self.at[k1]
        width = t1 - max(t0, self.first)
        if width <= 0:
            return None
        return ((i1 - i0) if t0 >= self.first else i1) / width


@dataclass
class SessionState:
    """Per-session emits and per-chunk quantities."""

    t_input: ChunkArray
    busy0: ChunkArray
    busy1: ChunkArray
    mesh_start: ChunkArray
    mesh_end: ChunkArray
    t_emit: array = field(default_factory=lambda: array("d"))
    chunk: array = field(default_factory=lambda: array("q"))
    first_input: float = np.inf
    drops: int = 0
    stages: set[str] = field(default_factory=set)

    @classmethod
    def sized(cls, chunks: int) -> SessionState:
        """Per-chunk arrays sized for ``chunks`` up front (no growth slack on long runs)."""
        return cls(ChunkArray(np.nan, chunks), ChunkArray(0.0, chunks), ChunkArray(0.0, chunks),
                   ChunkArray(np.nan, chunks), ChunkArray(np.nan, chunks))

    def emits(self) -> tuple[np.ndarray, np.ndarray]:
        return np.frombuffer(self.t_emit, dtype=float), np.frombuffer(self.chunk, dtype=np.int64)


def _family(stage: str) -> str:
    """``stage0.<s>`` per-session front ends count as stage0."""
    return stage.split(".", 1)[0]


class TraceReducer:
    """Consumes rows in recording order (see the module contract) and keeps the summary state.

    ``chunks``: how many chunks a session is expected to have (sizes its arrays; more
    are fine). ``warmup``: emits before the steady-state window of each session (the window's first
    counted gap ends at emit ``max(warmup, 1)``). Instants it settles: each session's
    window start (``("t0", s)``) and latest emit (``("last", s)``), the run's first input
    (``"run0"``) and latest emit (``"run1"``).
    """

    def __init__(self, warmup: int, chunks: int = 256) -> None:
        self.first = max(warmup, 1)
        self.chunks_hint = chunks
        self.sessions: dict[int, SessionState] = {}
        self.stages: dict[str, StageBusy] = {}
        self.counters: dict[str, CounterState] = {}
        self.counter_stage: dict[str, str] = {}
        self.hard_cuts = 0
        self.rows = 0
        self._marks: dict[Any, float] = {}
        self._pending: tuple[Any, list[tuple[int, int, str]], float] | None = None
        self._last_queue: str | None = None
        self._bytes_total = 0.0
        self._input_seen = False
        self.queue_bytes: dict[str, float] = {}
        self.stage_bytes: dict[str, float] = {}
        self.peak_queue_bytes: dict[str, float] = {}
        self.peak_stage_bytes: dict[str, float] = {}
        # the run's window starts at its first input, or at 0 in a trace without inputs
        self._register("run0", 0.0)

    # -- intake ------------------------------------------------------------------
    def feed(self, rows: Iterable[Row]) -> TraceReducer:
        handlers = {"span": self._span, "mark": self._mark, "counter": self._counter}
        for row in rows:
            self.rows += 1
            handlers[row[0]](row)
        return self

    def finish(self) -> TraceReducer:
        self._charge()
        return self

    def session(self, s: int) -> SessionState:
        st = self.sessions.get(s)
        if st is None:
            st = self.sessions[s] = SessionState.sized(self.chunks_hint)
        return st

    def _register(self, key: Any, x: float) -> None:
        """Settle the busy time of every stage and every counter's integral at ``x``."""
        self._marks[key] = x
        for busy in self.stages.values():
            busy.mark(key, x)
        for c in self.counters.values():
            c.mark(key, x)

    # -- rows --------------------------------------------------------------------
    def _span(self, row: Row) -> None:
        _, name, stage, lane, session, chunk, _, _, _, start, end, _ = row
        if lane == WAIT_LANE:  # what a stage waited on: an annotation, never counted
            return
        sess = self.session(int(session))
        sess.stages.add(stage)
        if lane != "compute":
            return
        busy = self.stages.get(stage)
        if busy is None:
            busy = self.stages[stage] = StageBusy()
            for key, x in self._marks.items():
                busy.at[key] = Settle(x, 0.0)
        busy.span(start, end)
        key = (stage, name, start, end)
        if self._pending is not None and self._pending[0] != key:
            self._charge()
        if self._pending is None:
            self._pending = (key, [], end - start)
        self._pending[1].append((int(session), int(chunk), stage))

    def _charge(self) -> None:
        """A batched call's items are consecutive rows: each gets its share of the call."""
        if self._pending is None:
            return
        (stage, _, start, end), items, dur = self._pending
        self._pending = None
        share = dur / len(items)
        fam = _family(stage)
        for session, chunk, _ in items:
            if chunk < 0:
                continue
            sess = self.session(session)
            if fam == "stage0":
                sess.busy0.add(chunk, share)
            elif fam == "stage1":
                sess.busy1.add(chunk, share)
            if stage == "stage1":
                sess.mesh_start.low(chunk, start)
                sess.mesh_end.high(chunk, end)

    def _mark(self, row: Row) -> None:
        self._charge()
        _, name, _, _, session, chunk, _, _, _, t, _, _ = row
        sess = self.session(int(session))
        if name == "emit":
            self._emit(sess, int(session), int(chunk), t)
        elif name == "input":
            if chunk >= 0:
                sess.t_input.low(int(chunk), t)
            if not self._input_seen:
                self._input_seen = True
                self._register("run0", t)
            sess.first_input = min(sess.first_input, t)
        elif name == "drop":
            sess.drops += 1
        elif name == "hard_cut":
            self.hard_cuts += 1

    def _emit(self, sess: SessionState, session: int, chunk: int, t: float) -> None:
        sess.t_emit.append(t)
        sess.chunk.append(chunk)
        if len(sess.t_emit) == self.first:
            self._register(("t0", session), t)
        self._register(("last", session), t)
        self._register("run1", t)

    def _counter(self, row: Row) -> None:
        self._charge()
        _, name, stage, _, _, _, _, _, _, t, _, value = row
        c = self.counters.get(name)
        if c is None:
            c = self.counters[name] = CounterState(t, t, value, value)
            for key, x in self._marks.items():
                c.at[key] = (x, 0.0)
        else:
            c.sample(t, value)
        self._memory(name, stage, value)

    def _memory(self, name: str, stage: str, value: float) -> None:
        """Depth counters are followed by the run's bytes total: its change is that queue's."""
        if name != TOTAL:
            self._last_queue = name
            self.counter_stage[name] = stage
            return
        q = self._last_queue
        if q is None:
            return
        delta, self._bytes_total = value - self._bytes_total, value
        dst = self.counter_stage[q]
        self.queue_bytes[q] = qb = self.queue_bytes.get(q, 0.0) + delta
        self.stage_bytes[dst] = sb = self.stage_bytes.get(dst, 0.0) + delta
        self.peak_queue_bytes[q] = max(self.peak_queue_bytes.get(q, 0.0), qb)
        self.peak_stage_bytes[dst] = max(self.peak_stage_bytes.get(dst, 0.0), sb)


def record_order(events: pd.DataFrame) -> Iterable[Row]:
    """A trace's rows in recording order: stably by record time (a span's end)."""
    t = np.where(events["kind"].to_numpy() == "span", events["end_ms"].to_numpy(),
                 events["start_ms"].to_numpy())
    order = np.argsort(t, kind="stable")
    cols = [events[c].to_numpy()[order].tolist() for c in COLUMNS]
    return zip(*cols, strict=True)
