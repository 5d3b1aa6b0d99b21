"""The probe's recorder: spans, marks, counters and sends of a user's own pipeline.

``Recorder`` owns the clock (ms since it was made), the rows and the run metadata;
``rec.stage("stage0")`` returns a :class:`Stage`, a view that tags every event with its
stage and may be shared by any number of threads; ``with stage.wait("q_in"):`` around
a blocking call records what the stage waited on (the wait lane ``explain`` reads).
Recording appends one tuple to a list (no lock on the hot path); :meth:`Recorder.trace`
and :meth:`Recorder.save` turn the rows into a pipefill trace (pandas is imported only
then).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipefill.probe.cuda import CudaTimer
from pipefill.probe.rows import DEFAULT_LIMIT, RowStore
from pipefill.traces.clock import SyncPoint, handshake

NAN = float("nan")
#: the trace's wait lane (``pipefill.traces.schema.WAIT_LANE``; not imported: pandas)
WAIT_LANE = "wait"
#: format of the ``probe`` metadata section
PROBE_FORMAT = 1


class Span:
    """A timed region: ``with stage.span(...)``. Times on the host clock, or with CUDA
    events on ``stream`` when one is given (resolved later, see :mod:`.cuda`)."""

    __slots__ = ("_rec", "_stream", "_t0", "_template")

    def __init__(self, rec: Recorder, template: tuple[Any, ...], stream: Any) -> None:
        self._rec, self._template, self._stream = rec, template, stream
        self._t0: Any = None

    def __enter__(self) -> Span:
        if self._stream is None:
            self._t0 = self._rec._clock()
        else:
            self._t0 = self._rec._cuda().start(self._stream)
        return self

    def __exit__(self, *exc: object) -> None:
        rec = self._rec
        if self._stream is not None:
            rec._cuda().finish(self._t0, self._stream, self._template)
            return
        t1 = rec._clock()
        scale, origin = rec._scale, rec._origin
        rec._rows.append(("span", *self._template[:8], (self._t0 - origin) * scale,
                          (t1 - origin) * scale, self._template[8]))


class Stage:
    """Events of one stage. Thread-safe; every method takes the DESIGN.md tags
    (``session``, ``chunk``, ``call_id``, ``epoch``, ``step``) as keywords."""

    __slots__ = ("_rec", "name")

    def __init__(self, rec: Recorder, name: str) -> None:
        self._rec, self.name = rec, name

    def span(self, phase: str, *, chunk: int = -1, epoch: int = 0, call_id: int = -1,
             step: int = -1, session: int = 0, lane: str = "compute",
             nbytes: float | None = None, stream: Any = None) -> Span:
        """Time a phase of ``chunk`` (``with s.span("decode", chunk=k): ...``)."""
        value = NAN if nbytes is None else float(nbytes)
        return Span(self._rec, (phase, self.name, lane, session, chunk, call_id, epoch, step,
                                value), stream)

    def wait(self, on: str, *, chunk: int = -1, epoch: int = 0, session: int = 0) -> Span:
        """Time what this stage waits on (``with s.wait("q_out"): item = q_out.get()``):
        a span on the ``wait`` lane, so ``pipefill explain`` attributes the idle time
        exactly instead of inferring it. ``on``: a queue name (its item or its free slot,
        by the queue's direction in the policy), or explicitly ``get:Q``, ``slot:Q``,
        ``input``, ``context:C`` (the decode of chunk C); see ``pipefill.traces.waits``."""
        return Span(self._rec, (on, self.name, WAIT_LANE, session, chunk, -1, epoch, -1, NAN),
                    None)

    def mark(self, name: str, *, chunk: int = -1, epoch: int = 0, call_id: int = -1,
             session: int = 0) -> None:
        """An instant: ``emit`` (frames out), ``input`` (chunk's input ready), ``drop``..."""
        at = self._rec.now_ms()
        self._rec._rows.append(("mark", name, self.name, "compute", session, chunk, call_id,
                                epoch, -1, at, at, NAN))

    def counter(self, name: str, value: float) -> None:
        """A sample of a queue depth (``q_in``, ``q_out``) or a byte count."""
        at = self._rec.now_ms()
        self._rec._rows.append(("counter", name, self.name, "queue", 0, -1, -1, 0, -1,
                                at, at, float(value)))

    def transfer(self, queue: str, *, chunk: int, nbytes: float, call_id: int = -1,
                 epoch: int = 0, session: int = 0, stream: Any = None) -> Span:
        """Time a message's transfer: ``with s.transfer("q_in", chunk=k, nbytes=n):
        conn.send(x)`` records a ``send`` span on the ``comm`` lane over the block, which
        ``calibrate`` fits latency and bandwidth to. Wrap the transfer itself (a pipe or
        socket write, a copy, ``dist.send``), not a wait for a free slot."""
        del queue  # as in send: the trace format has no queue column for sends
        return self.span("send", chunk=chunk, epoch=epoch, call_id=call_id, session=session,
                         lane="comm", nbytes=nbytes, stream=stream)

    def send(self, queue: str, *, chunk: int, nbytes: float, call_id: int = -1,
             epoch: int = 0, session: int = 0, duration_ms: float = 0.0) -> None:
        """A message of ``nbytes`` put on ``queue`` now (a ``send`` span on the ``comm``
        lane). Without ``duration_ms`` it has zero length: untimed, so ``calibrate``
        cannot fit the link to it (it says so); give the transfer's time, or use
        :meth:`transfer`. ``queue`` labels the call site; the queue's depth is recorded
        with :meth:`counter`."""
        del queue  # the trace format has no queue column for sends
        at = self._rec.now_ms()
        self._rec._rows.append(("span", "send", self.name, "comm", session, chunk, call_id,
                                epoch, -1, at, at + float(duration_ms), float(nbytes)))


class Recorder:
    """Records one process's (one rank's) events; see the module docstring.

    ``policy``/``run``/``costs``/``transport``: optional scenario tables saved with the
    trace (``calibrate`` uses them); ``meta``: anything else to keep. ``rank``: this
    process's rank (0 = the reference clock of a multi-rank run). ``limit``: rows held
    in memory before spilling to disk. ``clock``: nanoseconds, monotonic (tests pass
    a fake one). ``path``: where :func:`pipefill.probe.from_env` saves it at exit.
    """

    enabled = True

    def __init__(self, policy: dict[str, Any] | None = None, *,
                 run: dict[str, Any] | None = None, name: str = "probe", rank: int = 0,
                 meta: dict[str, Any] | None = None, limit: int = DEFAULT_LIMIT,
                 spill_dir: str | None = None,
                 clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self._clock = clock
        self._origin = clock()
        self._scale = 1e-6
        self._store = RowStore(limit, spill_dir)
        self._rows = self._store  # ``append`` is the hot-path entry point
        self._timer: CudaTimer | None = None
        self._sync: list[SyncPoint] = []
        self.rank = rank
        self.path: str | None = None
        self.meta: dict[str, Any] = {"scenario_name": name, **(meta or {})}
        for key, table in (("policy", policy), ("run", run)):
            if table is not None:
                self.meta[key] = dict(table)

    def now_ms(self) -> float:
        """Milliseconds since this recorder was made, on its own clock."""
        return (self._clock() - self._origin) * self._scale

    def stage(self, name: str) -> Stage:
        return Stage(self, name)

    def _cuda(self) -> CudaTimer:
        if self._timer is None:
            self._timer = CudaTimer(self.now_ms, self._store)
        return self._timer

    def sync(self, ask_ref_ms: Callable[[], float], rounds: int = 8) -> SyncPoint:
        """Handshake with the reference rank's clock (call at start and at end); see
        :mod:`pipefill.traces.clock`. ``ask_ref_ms`` returns the reference's ``now_ms``."""
        point = handshake(self.now_ms, ask_ref_ms, rounds)
        self._sync.append(point)
        return point

    def __len__(self) -> int:
        return len(self._store) + (self._timer.pending if self._timer else 0)

    def _metadata(self) -> dict[str, Any]:
        from pipefill.traces.meta import versions

        return {"format_version": 1, "source": "probe", "backend": "probe",
                **self.meta, "versions": versions(),
                "probe": {"format": PROBE_FORMAT, "rank": self.rank,
                          "sync": [p.as_list() for p in self._sync],
                          "spilled_rows": self._store.spilled_rows}}

    def trace(self) -> Any:
        """The rows so far as a :class:`pipefill.traces.schema.Trace` (CUDA spans are
        waited for first)."""
        from pipefill.traces.schema import Trace, from_rows

        if self._timer is not None:
            self._timer.flush()
        return Trace(from_rows(self._store.rows()), self._metadata())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the trace (``.parquet`` or ``.csv``) with its metadata, atomically."""
        from pipefill.traces.io import write_trace

        return write_trace(self.trace(), path)

    def close(self) -> None:
        """Remove spill files."""
        self._store.close()
