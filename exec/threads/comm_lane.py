"""Threads that move things between stages over time: comm lanes and the realtime source.

A :class:`CommLane` carries one sending stage's messages in FIFO order, each taking the
scenario's modelled transport time (latency + bytes / bandwidth), as the SimPy engine's
comm lane does; a message arrives (becomes visible to ``Get``) when its transfer ends.
A zero-time link needs no lane: ``put`` delivers at once, as the engine does.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping

from pipefill.exec.threads.state import QueuedMessage, SharedState
from pipefill.sim.scenario.model import RunConfig, Scenario, Transport


class CommLane:
    """Transfers of one stage, one at a time, in submission order.

    Contract: every submitted item is delivered exactly once unless the run aborts;
    ``close`` lets the lane finish what was submitted and then stop.
    """

    def __init__(self, stage: str, state: SharedState, transport: Transport,
                 on_error: Callable[[str], None]) -> None:
        self.stage, self.state, self.transport = stage, state, transport
        self.on_error = on_error
        self.fifo: deque[tuple[str, QueuedMessage]] = deque()
        self.active = 0  # submitted, not yet delivered (queued or on the wire)
        self.closing = False
        self.thread = threading.Thread(target=self._loop, name=f"pipefill-comm-{stage}",
                                       daemon=True)

    def submit(self, queue: str, item: QueuedMessage) -> None:
        with self.state.cond:
            self.fifo.append((queue, item))
            self.active += 1
            self.state.cond.notify_all()

    def busy(self) -> bool:
        """A message is still queued or on the wire: a new one must wait behind it."""
        with self.state.cond:
            return self.active > 0

    def close(self) -> None:
        with self.state.cond:
            self.closing = True
            self.state.cond.notify_all()

    def _next(self) -> tuple[str, QueuedMessage] | None:
        st = self.state
        with st.cond:
            while not self.fifo:
                if self.closing or st.aborted.is_set():
                    return None
                st.cond.wait(st.timeout_s)
            return self.fifo.popleft()

    def _loop(self) -> None:
        try:
            while (job := self._next()) is not None:
                queue, item = job
                sent_at = self.state.clock()
                delay_ms = self.transport.time_ms(item.msg.nbytes)
                if self.state.aborted.wait(delay_ms / 1e3):
                    return
                with self.state.cond:
                    self.active -= 1
                    self.state.arrive(queue, item, sent_at)
        except Exception as exc:  # crash-only: report and stop the run
            self.on_error(f"{self.stage} comm lane failed: {type(exc).__name__}: {exc}")


def source_stages(sc: Scenario) -> dict[int, str]:
    """Session -> the stage its inputs arrive at (the policy's ``source_stage`` hook)."""
    return {s: sc.policy.source_stage(sc, s) for s in range(sc.run.sessions)}


def feed_inputs(state: SharedState, run: RunConfig, stages: Mapping[int, str]) -> None:
    """Realtime source: chunk k's input arrives at ``run.input_time_ms(k)`` for each
    session of ``stages`` (session -> the stage it arrives at).

    The caller counted this feeder as pending work; it is uncounted when done, so a
    stall is only declared once no input can come any more.
    """
    try:
        for k in range(run.chunks):
            delay_ms = run.input_time_ms(k) - state.clock()
            if delay_ms > 0 and state.aborted.wait(delay_ms / 1e3):
                return
            state.feed(k, stages)
    finally:
        state.add_pending(-1)
