"""One pass over trace rows in recording order, keeping only what the metrics need.

:class:`TraceReducer` is how every summary is computed: :func:`pipefill.traces.metrics.
compute_metrics` feeds it a whole trace, and a long simulation feeds it the rows as they
are recorded, so a run of any length is summarised without ever holding its trace. What
it keeps is bounded: per session the chunks emitted in the last :data:`LAG` emits (a
chunk's values are final by then) and a :class:`~pipefill.traces.window.WindowStats`;
per stage and queue a few accumulators.

Contract on the rows (what a recorder produces; :func:`record_order` restores it for a
trace read back in time order): a span arrives when it ends, a mark or counter at its
time, so rows come in non-decreasing order of their *record time* (``end_ms`` of a span,
``start_ms`` otherwise); the spans of one batched call are consecutive; compute spans of
one stage do not partially overlap (a stage runs one thing at a time; the items of a
batched call share one interval). Under it, the union of a stage's busy time up to an
instant ``x`` is settled exactly by the pieces that arrive after ``x`` was registered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipefill.traces.schema import COLUMNS, WAIT_LANE
from pipefill.traces.window import Anchor, WindowStats

if TYPE_CHECKING:
    import pandas as pd

TOTAL = "bytes_in_flight"
#: a row, as the recorder writes it (the trace columns in order)
Row = tuple[Any, ...]
#: emits after its own before a chunk's values are final (its last spans have ended)
LAG = 256
_NAN = float("nan")


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
    """Union of one stage's compute spans, as disjoint pieces, with settled instants:
    named ones in ``at`` and anchors' in ``pending`` until a piece starts at or after them
    (pieces arrive in order, so no later piece can reach back before it)."""

    last_end: float = -np.inf
    total: float = 0.0
    at: dict[Any, Settle] = field(default_factory=dict)
    pending: list[Settle] = field(default_factory=list)

    def span(self, s: float, e: float) -> None:
        a = max(s, self.last_end)
        self.last_end = max(self.last_end, e)
        if e > a:
            self.total += e - a
            for settle in self.at.values():
                settle.piece(a, e)
            if self.pending:
                for settle in self.pending:
                    settle.piece(a, e)
                self.pending = [p for p in self.pending if p.x > a]

    def mark(self, key: Any, x: float) -> None:
        # pieces already in are all over by x (record order): only later ones straddle it
        self.at[key] = Settle(x, self.total)

    def settle_at(self, x: float) -> Settle:
        s = Settle(x, self.total)
        self.pending.append(s)
        return s

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

    def sample(self, t: float, v: float) -> None:
        self.integral += self.last_v * (t - self.last_t)
        self.last_t, self.last_v = t, v
        self.peak = max(self.peak, v)

    def integral_at(self, x: float) -> float:
        # samples are recorded at their time: none can come before x any more
        return self.integral + self.last_v * (x - self.last_t)


@dataclass
class SessionState:
    """One session: its window and its recent emits on their way into it. An emit enters
    the window's emit stream :data:`LAG` emits later (``pending``: chunk, time, anchor),
    when whether it is in the cool-down is known, or at once at a checkpoint; its chunk's
    values enter the chunk stream :data:`LAG` emits later (``queue``), once final
    (``book``: chunk -> [t_input, busy0, busy1, mesh_start, mesh_end])."""

    stats: WindowStats
    book: dict[int, list[float]] = field(default_factory=dict)
    queue: deque[tuple[int, float]] = field(default_factory=deque)
    pending: deque[tuple[int, float, Anchor | None]] = field(default_factory=deque)
    prev_mesh_end: float = _NAN
    first_input: float = np.inf
    #: the last chunk's input mark and the start of its first compute: the later of the two
    #: is when the last input entered the pipeline (the cool-down starts)
    last_input_t: float | None = None
    last_start: float = np.inf
    drops: int = 0
    misses: int = 0
    t_first_emit: float = _NAN
    stages: set[str] = field(default_factory=set)

    def entry(self, chunk: int) -> list[float]:
        e = self.book.get(chunk)
        if e is None:
            e = self.book[chunk] = [_NAN, 0.0, 0.0, _NAN, _NAN]
        return e

    def entered(self) -> float:
        """When the last input entered the pipeline (inf while not known)."""
        if self.last_input_t is None or not np.isfinite(self.last_start):
            return np.inf
        return max(self.last_input_t, self.last_start)

    def release(self) -> None:
        """The oldest pending emit goes to the window's emit stream."""
        chunk, t, anchor = self.pending.popleft()
        self.stats.emit(t, chunk, t > self.entered(), anchor)

    def finalize(self) -> None:
        """The oldest emitted chunk's values go to the window's chunk stream."""
        chunk, t = self.queue.popleft()
        e = self.book.pop(chunk, None) or [_NAN, 0.0, 0.0, _NAN, _NAN]
        prev, self.prev_mesh_end = self.prev_mesh_end, e[4]
        mesh = max(0.0, e[3] - prev) if e[3] == e[3] and prev == prev else _NAN
        while self.stats.emits <= self.stats.chunks_in and self.pending:
            self.release()  # the chunk stream never runs ahead of the emit stream
        self.stats.chunk(e[1], e[2], t - e[0], mesh)


def _family(stage: str) -> str:
    """``stage0.<s>`` per-session front ends count as stage0."""
    return stage.split(".", 1)[0]


class TraceReducer:
    """Consumes rows in recording order (see the module contract) and keeps the summary state.

    ``warmup``: emits before the steady-state window of each session (None: MSER-5);
    ``last_chunk``: a session's last input chunk, per session or for all (its input mark
    starts the cool-down: later emits leave the window; None: no cool-down);
    ``deadline_ms``: the time between two emits' deadlines (None: no target). Settled
    instants: the run's first input (``"run0"``) and latest emit (``"run1"``), and each
    session's window anchors.
    """

    def __init__(self, warmup: int | None, last_chunk: int | dict[int, int] | None = None,
                 deadline_ms: float | None = None) -> None:
        self.warmup = warmup
        self.last_chunk = last_chunk
        self.deadline_ms = deadline_ms
        #: a precision watch: called with session 0's window when it reaches ``next`` emits
        self.on_emit: Any = None
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
        for sess in self.sessions.values():
            while sess.pending:
                sess.release()
            while sess.queue:
                sess.finalize()
            sess.stats.finish()
        return self

    def session(self, s: int) -> SessionState:
        st = self.sessions.get(s)
        if st is None:
            st = self.sessions[s] = SessionState(WindowStats(self.warmup))
        return st

    def _register(self, key: Any, x: float) -> None:
        """Settle the busy time of every stage at ``x`` under ``key``."""
        self._marks[key] = x
        for busy in self.stages.values():
            busy.mark(key, x)

    def unsettled(self) -> bool:
        """Whether some stage's busy time at a registered anchor may still grow."""
        return any(b.pending for b in self.stages.values())

    def anchor(self, x: float) -> Anchor:
        """Busy time and counter integrals at ``x`` (now, in record order)."""
        return Anchor(x, {s: b.settle_at(x) for s, b in self.stages.items()},
                      {n: c.integral_at(x) for n, c in self.counters.items()})

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
        col = 1 if fam == "stage0" else 2 if fam == "stage1" else 0
        for session, chunk, _ in items:
            if chunk < 0:
                continue
            sess = self.session(session)
            if chunk == self._last(session) and start < sess.last_start:
                sess.last_start = start
            e = sess.entry(chunk)
            if col:
                e[col] += share
            if stage == "stage1":
                e[3] = start if not e[3] <= start else e[3]
                e[4] = end if not e[4] >= end else e[4]

    def _mark(self, row: Row) -> None:
        self._charge()
        _, name, _, _, session, chunk, _, _, _, t, _, _ = row
        sess = self.session(int(session))
        if name == "emit":
            self._emit(sess, int(chunk), t)
        elif name == "input":
            self._input(sess, int(session), int(chunk), t)
        elif name == "drop":
            sess.drops += 1
        elif name == "hard_cut":
            self.hard_cuts += 1

    def _last(self, session: int) -> int | None:
        """The session's last input chunk (None: unknown, no cool-down)."""
        if isinstance(self.last_chunk, dict):
            return self.last_chunk.get(session)
        return self.last_chunk

    def _input(self, sess: SessionState, session: int, chunk: int, t: float) -> None:
        if chunk >= 0:
            e = sess.entry(chunk)
            e[0] = t if not e[0] <= t else e[0]
            last = self._last(session)
            if last is not None and chunk >= last and sess.last_input_t is None:
                sess.last_input_t = t
        if not self._input_seen:
            self._input_seen = True
            self._register("run0", t)
        sess.first_input = min(sess.first_input, t)

    def _emit(self, sess: SessionState, chunk: int, t: float) -> None:
        stats = sess.stats
        if stats.frozen:
            return
        pos = stats.emits + len(sess.pending)
        sess.pending.append((chunk, t, self.anchor(t) if stats.wants_anchor(pos) else None))
        if len(sess.pending) > LAG:
            sess.release()
        # playback starts at the first emit; emit n is due n chunk-periods later
        if pos == 0:
            sess.t_first_emit = t
        if self.deadline_ms is not None and t > sess.t_first_emit + pos * self.deadline_ms + 1e-9:
            sess.misses += 1
        sess.queue.append((chunk, t))
        if len(sess.queue) > LAG:
            sess.finalize()
        self._register("run1", t)
        watch = self.on_emit
        if watch is not None and sess is self.sessions.get(0) and pos + 1 >= watch.next:
            while sess.pending:  # a checkpoint judges the window at exactly this emit
                sess.release()
            watch(stats)

    def _counter(self, row: Row) -> None:
        self._charge()
        _, name, stage, _, _, _, _, _, _, t, _, value = row
        c = self.counters.get(name)
        if c is None:
            c = self.counters[name] = CounterState(t, t, value, value)
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


def last_inputs(events: pd.DataFrame) -> dict[int, int]:
    """Each session's last input chunk in a trace (what starts its cool-down)."""
    marks = events[(events["kind"] == "mark") & (events["name"] == "input")
                   & (events["chunk"] >= 0)]
    return {int(s): int(c) for s, c in marks.groupby("session")["chunk"].max().items()}
