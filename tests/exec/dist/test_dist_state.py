"""Remote queues without processes: two ranks' states joined by a hand-cranked link.

Frames go through the real encoding, checkers and comms handlers; only the transport is
replaced by a pump, so slot credits, the flush round trip and the consumer's flush can
be checked step by step."""

from __future__ import annotations

import threading
from collections import deque

import pytest
import torch

from pipefill.exec.dist.comms_thread import DeviceHandoff, Hooks, LinkChannel, LinkConfig
from pipefill.exec.dist.link import noop
from pipefill.exec.dist.state import DistState, RankWiring
from pipefill.exec.dist.trace import DrainRecorder
from pipefill.exec.dist.wire import Frame, parse_body, parse_prefix, seal
from pipefill.exec.threads.runtime import CpuRuntime
from pipefill.exec.threads.state import QueuedMessage, StallDetected
from pipefill.sim.program.actions import INFER, Message, QueueSpec
from pipefill.traces.recorder import Tag

SPECS = [QueueSpec("q_in", 2, "stage0", "stage1"), QueueSpec("q_out", 2, "stage1", "stage0")]


class _Rank:
    """One rank's state and comms handlers; its outgoing frames wait in ``sent``."""

    def __init__(self, stage: str, rank: int) -> None:
        self.sent: deque[Frame] = deque()
        self.rec = DrainRecorder()
        runtime = CpuRuntime((stage,), 1)
        mine = frozenset(s.name for s in SPECS if s.src == stage)
        theirs = frozenset(s.name for s in SPECS if s.dst == stage)
        cfg = LinkConfig(rank, 1 - rank, mine, theirs, 0.001)
        hooks = Hooks()
        self.comms = LinkChannel(cfg, hooks, self.rec, DeviceHandoff(runtime), None,
                                 threading.Event())
        wiring = RankWiring(self._submit, None, lambda q, n: torch.zeros(n, dtype=torch.uint8),
                            runtime.now_ms, bytes_counter=rank == 0)
        self.state = DistState(SPECS, stage, wiring, 1, 4, True, self.rec, runtime.now_ms, 5.0)
        hooks.state = self.state

    def _submit(self, queue: str, frame: Frame, ready: object) -> None:
        self.sent.append(frame)

    def pump_to(self, other: _Rank) -> int:
        """Deliver every frame sent so far (through the wire format); returns how many."""
        n = 0
        while self.sent:
            frame = self.comms._stamp(self.sent.popleft(), None)
            sealed, raw = seal(frame)
            header = parse_prefix(sealed.header.ints())
            body, _ = parse_body(header, raw)
            other.comms._receive(Frame(header, body, frame.tensors))
            n += 1
        return n


def _msg(chunk: int) -> QueuedMessage:
    return QueuedMessage(Message(INFER, Tag(0, chunk, chunk, 0), 100))


@pytest.fixture
def ranks():
    return _Rank("stage0", 0), _Rank("stage1", 1)


def test_slots_of_a_cross_rank_queue_come_back_as_credits(ranks):
    r0, r1 = ranks
    for k in range(2):
        r0.state.reserve("stage0", "q_in")
        r0.state.put("q_in", _msg(k), in_transit=False)
    assert r0.state.view().free["q_in"] == 0 and r1.state.view().ready["q_in"] == 0
    assert r0.pump_to(r1) == 2
    assert r1.state.view().ready["q_in"] == 2
    got = r1.state.get("stage1", "q_in")
    assert got.msg.tag.chunk == 0 and got.msg.nbytes == 100
    assert r0.state.view().free["q_in"] == 0  # taken is not finished: the slot stays held
    r1.state.release("q_in")
    r1.pump_to(r0)
    assert r0.state.view().free["q_in"] == 1
    sends = r1.rec.trace({}).spans
    assert list(sends["chunk"]) == [0, 1] and set(sends["value"]) == {100.0}


def test_a_producer_flush_takes_back_what_the_consumer_has_not_taken(ranks):
    r0, r1 = ranks
    for k in range(2):
        r0.state.reserve("stage0", "q_in")
        r0.state.put("q_in", _msg(k), in_transit=False)
    r0.pump_to(r1)
    r1.state.get("stage1", "q_in")  # chunk 0 is being worked on; chunk 1 waits
    box: dict[str, list[Message]] = {}
    asker = threading.Thread(target=lambda: box.setdefault("x", r0.state.flush("q_in")))
    asker.start()
    while not r0.sent:
        asker.join(0.01)
    flush = r0.sent[0]
    frame = r0.comms._stamp(r0.sent.popleft(), None)
    r1.comms._receive(frame)  # the consumer's comms answers, never its program
    reply, _ = r1.comms.outbox.take(0.0) or (noop(-1), None)
    r0.comms._receive(r1.comms._stamp(reply, None))
    asker.join(5)
    assert flush.action == "flush" and reply.action == "flushed"
    assert [m.tag.chunk for m in box["x"]] == [1]
    assert r0.state.view().free["q_in"] == 1 and r1.state.view().ready["q_in"] == 0


def test_a_consumer_flush_credits_the_producer(ranks):
    r0, r1 = ranks
    r1.state.reserve("stage1", "q_out")
    r1.state.put("q_out", _msg(0), in_transit=False)
    r1.pump_to(r0)
    assert r1.state.view().free["q_out"] == 1
    dropped = r0.state.flush("q_out")
    assert [m.tag.chunk for m in dropped] == [0]
    r0.pump_to(r1)
    assert r1.state.view().free["q_out"] == 2


def test_a_queue_used_from_the_wrong_end_is_a_stall_not_a_silent_hang(ranks):
    r0, _ = ranks
    with pytest.raises(StallDetected, match="release on q_in from the wrong end"):
        r0.state.release("q_in")
    with pytest.raises(StallDetected, match="reserve on q_out from the wrong end"):
        r0.state.reserve("stage0", "q_out")
