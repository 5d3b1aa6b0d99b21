"""A rank's local view of the run's queues: the two ends of a queue may live on two ranks.

:class:`DistState` is the threads executor's :class:`SharedState` with one twist: a
queue whose ``src`` and ``dst`` stages run on different ranks is *remote*. The
producer's rank holds its slot accounting (Reserve waits for a free slot; the
consumer's Release comes back as a ``credit`` frame), so D_in/D_out still bound the
messages outstanding between ranks. A Put sends a frame on the comms thread; the
consumer's rank holds the arrived items that Get takes. Flush keeps the threads
semantics: on the producer's rank it is a round trip (the consumer discards its arrived,
untaken items and names them back); on the consumer's rank it discards locally and
credits the producer. Poll and WaitChange see this rank's view; the version moves on
local events and on every frame received.

:class:`FollowerState` serves the mesh followers, which run the same program as their
group's leader: every program result that depends on the world (Get, Poll, Flush) is the
leader's, broadcast to them; the other actions are the leader's business.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipefill.exec.dist.wire import Frame, Header, message_frame
from pipefill.exec.threads.state import ExecQueue, QueuedMessage, SharedState, StallDetected
from pipefill.sim.program.actions import Message, QueueSpec, StateView
from pipefill.sim.program.queues import bytes_in_flight
from pipefill.traces.recorder import Recorder, Tag

#: a queue's end on this rank
LOCAL, PRODUCER, CONSUMER = "local", "producer", "consumer"
#: submit(queue, frame, ready event) hands a frame to the link carrying ``queue``
Submit = Callable[[str, Frame, Any], None]
#: cast(frame, ready event) hands a program result to the mesh broadcast
Cast = Callable[[Frame, Any], None]


def role_of(spec: QueueSpec, here: str) -> str | None:
    ends = (spec.src == here, spec.dst == here)
    return {(True, True): LOCAL, (True, False): PRODUCER, (False, True): CONSUMER}.get(ends)


@dataclass(frozen=True)
class RankWiring:
    """How a rank's state reaches the comms thread.

    ``submit``: a frame toward the rank at the other end of a queue; ``cast``: a program
    result toward the mesh followers (None when there are none); ``filler(queue,
    nbytes)``: bytes standing in for a payload without tensors, on the queue's link;
    ``stamp``: now in rank0's clock; ``bytes_counter``: whether this rank records the
    ``bytes_in_flight`` counter (rank0 only, so the trace has one series).
    """

    submit: Submit
    cast: Cast | None
    filler: Callable[[str, int], Any]
    stamp: Callable[[], float]
    bytes_counter: bool


class DistState(SharedState):
    """Shared state of the programs of one rank (a group's leader).

    Invariants: on the producer's rank ``0 <= held <= capacity`` counts messages sent
    and not yet credited; on the consumer's rank ``held`` counts messages arrived and
    not yet released. A flush round trip is answered by the consumer's comms thread,
    never by a program, so it cannot wait on the program that asked.
    """

    def __init__(self, specs: list[QueueSpec], here: str, wiring: RankWiring,
                 sessions: int, chunks: int, saturated: bool, rec: Recorder,
                 clock: Callable[[], float], timeout_s: float) -> None:
        super().__init__(specs, sessions, chunks, saturated, rec, clock, timeout_s)
        self.roles = {s.name: role_of(s, here) for s in specs}
        self.wire = wiring
        self._flush_ids = itertools.count()
        self._flush_replies: dict[int, list[int]] = {}

    # -- overrides of SharedState -----------------------------------------------------
    def _check_progress_possible(self) -> None:
        """Another rank can always change this state; timeouts bound every wait."""

    def count(self, q: ExecQueue) -> None:
        now = self.clock()
        if self.roles[q.spec.name] != CONSUMER:  # the producer's rank owns the depth
            self.rec.counter(q.spec.name, q.spec.dst, now, q.held)
        if self.wire.bytes_counter:
            self.rec.counter("bytes_in_flight", "all", now, bytes_in_flight(self.queues))

    def reserve(self, who: str, name: str) -> None:
        self._require(name, (LOCAL, PRODUCER), "reserve")
        super().reserve(who, name)

    def put(self, name: str, item: QueuedMessage, in_transit: bool) -> None:
        if self._require(name, (LOCAL, PRODUCER), "put") == LOCAL:
            super().put(name, item, in_transit)
            return
        msg = item.msg
        frame = message_frame(name, msg, -1, self.wire.stamp(),
                              None if _has_tensors(msg) else self.wire.filler(name, msg.nbytes))
        q = self.queues[name]
        with self.cond:
            q.send_remote(msg)
            self.count(q)
            self.wire.submit(name, frame, item.ready)

    def get(self, who: str, name: str) -> QueuedMessage:
        self._require(name, (LOCAL, CONSUMER), "get")
        item = super().get(who, name)
        if self.wire.cast is not None:
            self.wire.cast(message_frame(name, item.msg, -1, 0.0, None), item.ready)
        return item

    def view(self) -> StateView:
        v = super().view()
        if self.wire.cast is not None:
            body = {"version": v.version, "now_ms": v.now_ms, "free": dict(v.free),
                    "ready": dict(v.ready), "inputs": {str(k): n for k, n in v.inputs.items()}}
            self.wire.cast(Frame(Header("view", -1), body), None)
        return v

    def release(self, name: str) -> None:
        if self._require(name, (LOCAL, CONSUMER), "release") == LOCAL:
            super().release(name)
            return
        q = self.queues[name]
        with self.cond:
            msg = q.release_oldest()
            if msg is None:
                raise StallDetected(f"release of {name} with no message held")
            self._credit_frame(name, [msg.tag.call_id])
            self.count(q)
            self.bump()

    def flush(self, name: str) -> list[Message]:
        role = self._require(name, (LOCAL, PRODUCER, CONSUMER), "flush")
        if role == LOCAL:
            flushed = super().flush(name)
        elif role == CONSUMER:
            flushed = self._discard(name, credit=True)
        else:
            flushed = self._flush_remote(name)
        if self.wire.cast is not None:
            self._cast_dropped(name, flushed)
        return flushed

    # -- helpers ---------------------------------------------------------------------
    def _require(self, name: str, roles: tuple[str, ...], what: str) -> str:
        role = self.roles.get(name)
        if role not in roles:
            raise StallDetected(f"{what} on {name} from the wrong end (this rank is its "
                                f"{role or 'neither end'})")
        return str(role)

    def _credit_frame(self, name: str, call_ids: list[int]) -> None:
        body = {"credits": [[name, call_ids]]}
        self.wire.submit(name, Frame(Header("credit", -1), body), None)

    def _discard(self, name: str, credit: bool) -> list[Message]:
        """Drop every arrived, untaken item of a queue whose consumer is here."""
        q = self.queues[name]
        with self.cond:
            flushed = [p.msg for p in q.flush()]
            gone = {m.tag.call_id for m in flushed}
            if credit and flushed:
                self._credit_frame(name, sorted(gone))
            self.bump()
            return flushed

    def _flush_remote(self, name: str) -> list[Message]:
        """Ask the consumer's rank to discard its untaken items; free their slots here."""
        q = self.queues[name]
        with self.cond:
            req = next(self._flush_ids)
            self.wire.submit(name, Frame(Header("flush", -1), {"queue": name, "req": req}), None)
            self.wait_until(f"flush {name}", lambda: req in self._flush_replies)
            flushed = q.forget(set(self._flush_replies.pop(req)))
            self.count(q)
            self.bump()
            return flushed

    def _cast_dropped(self, name: str, flushed: list[Message]) -> None:
        tags = [[m.tag.session, m.tag.chunk, m.tag.call_id, m.tag.epoch, m.tag.step,
                 m.kind, m.nbytes] for m in flushed]
        assert self.wire.cast is not None
        self.wire.cast(Frame(Header("dropped", -1), {"queue": name, "items": tags}), None)

    # -- called by the comms thread ----------------------------------------------------
    def arrive_remote(self, name: str, item: QueuedMessage, sent_at: float,
                      sent_bytes: int) -> None:
        """A message from the producer's rank arrived (``sent_at`` in this rank's clock;
        ``sent_bytes``: the tensor bytes its frame carried, what the ``send`` span records)."""
        q = self.queues[name]
        with self.cond:
            now = self.clock()
            self.rec.span("send", q.spec.src, "comm", item.msg.tag, min(sent_at, now), now,
                          value=float(sent_bytes))
            q.arrive_remote(item)
            self.count(q)
            self.bump()

    def credit(self, name: str, call_ids: list[int]) -> None:
        """The consumer finished (or discarded) these messages: free their slots."""
        q = self.queues[name]
        with self.cond:
            q.forget(set(call_ids))
            self.count(q)
            self.bump()

    def serve_flush(self, name: str, req: int) -> Frame:
        """Answer a producer's flush: discard what arrived and was not taken."""
        flushed = self._discard(name, credit=False)
        body = {"queue": name, "req": req, "call_ids": [m.tag.call_id for m in flushed]}
        return Frame(Header("flushed", -1), body)

    def flush_answered(self, req: int, call_ids: list[int]) -> None:
        with self.cond:
            self._flush_replies[req] = call_ids
            self.bump()


def _has_tensors(msg: Message) -> bool:
    return msg.payload is not None


class FollowerState(SharedState):
    """A mesh follower's state: the leader's program results, in the order it took them.

    Invariant: the follower's program asks for results in exactly the order the
    leader's produced them (same program, same results); a mismatch is a desync and
    fails the run rather than computing something else.
    """

    def __init__(self, specs: list[QueueSpec], rec: Recorder, clock: Callable[[], float],
                 timeout_s: float) -> None:
        super().__init__(specs, 1, 0, True, rec, clock, timeout_s)
        self.replay: deque[tuple[str, str, Any]] = deque()

    def _check_progress_possible(self) -> None:
        """The leader can always send the next result; timeouts bound every wait."""

    def push(self, kind: str, name: str, value: Any) -> None:
        with self.cond:
            self.replay.append((kind, name, value))
            self.bump()

    def _next(self, who: str, kind: str, name: str) -> Any:
        with self.cond:
            self.wait_until(who, lambda: bool(self.replay))
            got_kind, got_name, value = self.replay.popleft()
        if (got_kind, got_name) != (kind, name):
            raise StallDetected(f"mesh desync: the program asked for {kind} {name} but the "
                                f"leader's next result was {got_kind} {got_name}")
        return value

    def reserve(self, who: str, name: str) -> None:
        return None

    def put(self, name: str, item: QueuedMessage, in_transit: bool) -> None:
        return None

    def release(self, name: str) -> None:
        return None

    def get(self, who: str, name: str) -> QueuedMessage:
        item: QueuedMessage = self._next(who, "get", name)
        return item

    def view(self) -> StateView:
        view: StateView = self._next("poll", "view", "")
        return view

    def flush(self, name: str) -> list[Message]:
        flushed: list[Message] = self._next("flush", "flush", name)
        return flushed

    def wait_change(self, who: str, version: int, timeout_ms: float | None = None) -> None:
        return None

    def wait_input(self, who: str, tag: Tag) -> None:
        return None


def view_from_body(body: dict[str, Any]) -> StateView:
    return StateView(version=int(body["version"]), now_ms=float(body["now_ms"]),
                     free={str(k): int(v) for k, v in body["free"].items()},
                     ready={str(k): int(v) for k, v in body["ready"].items()},
                     inputs={int(k): int(v) for k, v in body["inputs"].items()})


def dropped_from_body(body: dict[str, Any]) -> list[Message]:
    return [Message(str(kind), Tag(int(s), int(c), int(i), int(e), int(st)), int(n))
            for s, c, i, e, st, kind, n in body["items"]]
