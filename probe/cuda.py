"""CUDA span timing with events, resolved lazily off the hot path.

A CUDA span records a start and an end event on its stream and queues them; nothing
waits. Completed pairs are turned into trace rows later: a few at a time when the
queue grows (``query`` never blocks) and all at once in :meth:`CudaTimer.flush` (at
save). Event times are placed on the host clock through one reference event, taken
once at the first CUDA span after a device synchronize: that is the only
synchronization the probe ever does. torch is imported only when a CUDA span is made.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from pipefill.probe.rows import Row, RowStore

#: pending pairs above which a span's exit resolves the completed ones
POLL_ABOVE = 64

#: (name, stage, lane, session, chunk, call_id, epoch, step, value): a span without times
Template = tuple[Any, ...]


def _torch_events() -> Callable[[], Any]:
    import torch

    return lambda: torch.cuda.Event(enable_timing=True)


def _torch_sync() -> None:
    import torch

    torch.cuda.synchronize()


class CudaTimer:
    """Turns event pairs into rows of ``store`` on the host clock ``now_ms``.

    ``events`` makes a timing event (``record(stream)``, ``query()``, ``synchronize()``,
    ``elapsed_time(other)`` in ms); ``sync`` waits for the device. Both default to torch
    and exist so the resolution logic is testable without a GPU.
    """

    def __init__(self, now_ms: Callable[[], float], store: RowStore,
                 events: Callable[[], Any] | None = None,
                 sync: Callable[[], None] | None = None) -> None:
        self._now_ms, self._store = now_ms, store
        self._events, self._sync = events, sync
        self._ref: tuple[Any, float] | None = None
        self._pending: deque[tuple[Any, Any, Template]] = deque()
        self._pool: list[Any] = []
        self._lock = threading.Lock()

    def _event(self) -> Any:
        if self._events is None:
            self._events = _torch_events()
        try:
            return self._pool.pop()
        except IndexError:
            return self._events()

    def _reference(self, stream: Any) -> None:
        with self._lock:
            if self._ref is not None:
                return
            (self._sync or _torch_sync)()
            ev = self._event()
            before = self._now_ms()
            ev.record(stream)
            ev.synchronize()
            self._ref = (ev, (before + self._now_ms()) / 2.0)

    def start(self, stream: Any) -> Any:
        if self._ref is None:
            self._reference(stream)
        ev = self._event()
        ev.record(stream)
        return ev

    def finish(self, start: Any, stream: Any, template: Template) -> None:
        end = self._event()
        end.record(stream)
        self._pending.append((start, end, template))
        if len(self._pending) > POLL_ABOVE:
            self.poll()

    def _resolve(self, start: Any, end: Any, template: Template) -> Row:
        assert self._ref is not None
        ref, ref_ms = self._ref
        t0 = ref_ms + ref.elapsed_time(start)
        t1 = ref_ms + ref.elapsed_time(end)
        self._pool.extend((start, end))
        name, stage, lane, session, chunk, call_id, epoch, step, value = template
        return ("span", name, stage, lane, session, chunk, call_id, epoch, step,
                t0, max(t0, t1), value)

    def poll(self) -> int:
        """Resolve the oldest pairs whose end event has completed; never blocks."""
        done = 0
        with self._lock:
            while self._pending and self._pending[0][1].query():
                self._store.append(self._resolve(*self._pending.popleft()))
                done += 1
        return done

    def flush(self) -> int:
        """Wait for every pending pair and resolve it (at save time)."""
        done = 0
        with self._lock:
            while self._pending:
                start, end, template = self._pending.popleft()
                end.synchronize()
                self._store.append(self._resolve(start, end, template))
                done += 1
        return done

    @property
    def pending(self) -> int:
        return len(self._pending)
