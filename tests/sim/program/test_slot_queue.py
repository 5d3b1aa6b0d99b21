"""SlotQueue: slot and byte accounting, locally and as the two ends of a remote queue."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill.sim.program.actions import Message, QueueSpec
from pipefill.sim.program.queues import SlotQueue, bytes_in_flight, travels_on_lane
from pipefill.traces.recorder import Tag
from tests.helpers import ROOT

SPEC = QueueSpec("q", 3, "stage0", "stage1")


def _msg(call_id: int, nbytes: int = 10) -> Message:
    return Message("infer", Tag(0, call_id, call_id), nbytes)


def _same(m: Message) -> Message:
    return m


def test_local_put_release_and_flush_keep_slots_and_bytes():
    q: SlotQueue[Message] = SlotQueue(SPEC, _same)
    for i in range(3):
        q.take_slot()
        q.send(_msg(i, 10 * (i + 1)))
    assert (q.free, q.in_transit, q.nbytes) == (0, 3, 60)
    q.arrive(q.unreleased[0])
    q.arrive(q.unreleased[1])
    assert q.take().tag.call_id == 0
    assert q.release() and (q.held, q.nbytes) == (2, 50)  # the oldest (10 bytes) left
    assert [m.tag.call_id for m in q.flush()] == [1]  # arrived, untaken
    assert (q.held, q.nbytes, [m.tag.call_id for m in q.unreleased]) == (1, 30, [2])


def test_the_two_ends_of_a_remote_queue():
    producer: SlotQueue[Message] = SlotQueue(SPEC, _same)
    consumer: SlotQueue[Message] = SlotQueue(SPEC, _same)
    for i in range(3):
        producer.take_slot()
        producer.send_remote(_msg(i))
        consumer.arrive_remote(_msg(i))
    assert (producer.held, producer.in_transit, producer.nbytes) == (3, 0, 30)
    assert (consumer.held, len(consumer.items), consumer.nbytes) == (3, 3, 30)
    consumer.take()
    released = consumer.release_oldest()
    assert released is not None and released.tag.call_id == 0
    dropped = consumer.flush()  # chunks 1 and 2 arrived, never taken
    assert [m.tag.call_id for m in dropped] == [1, 2]
    assert (consumer.held, consumer.nbytes, consumer.release_oldest()) == (0, 0, None)
    credited = producer.forget({0, 2})
    assert [m.tag.call_id for m in credited] == [0, 2]
    assert (producer.held, producer.nbytes) == (1, 10)
    assert producer.forget({1})[0].tag.call_id == 1 and producer.free == 3


@settings(max_examples=60, derandomize=True)
@given(st.lists(st.sampled_from(["put", "arrive", "take", "release", "flush"]), max_size=40),
       st.lists(st.integers(0, 1000), min_size=40, max_size=40))
def test_nbytes_is_always_the_sum_of_unreleased_messages(ops, sizes):
    q: SlotQueue[Message] = SlotQueue(SPEC, _same)
    sent = taken = 0  # a consumer releases only what it took
    for op, size in zip(ops, sizes, strict=False):
        if op == "put" and q.free > 0:
            q.take_slot()
            q.send(_msg(sent, size))
            sent += 1
        elif op == "arrive" and q.in_transit:
            q.arrive(q.unreleased[len(q.unreleased) - q.in_transit])
        elif op == "take" and q.items:
            q.take()
            taken += 1
        elif op == "release" and taken:
            assert q.release()
            taken -= 1
        elif op == "flush":
            q.flush()
        assert q.nbytes == sum(m.nbytes for m in q.unreleased) == bytes_in_flight({"q": q})
        assert 0 <= q.held <= SPEC.capacity


def test_lane_decision():
    local = QueueSpec("w", 2, "stage1", "stage1", transport=False)
    assert not travels_on_lane(local, 5.0, True)  # a local buffer never travels
    assert travels_on_lane(SPEC, 0.1, False)
    assert travels_on_lane(SPEC, 0.0, True)  # FIFO: behind a message still in transit
    assert not travels_on_lane(SPEC, 0.0, False)


_FIELDS = {"held", "items", "unreleased", "in_transit", "nbytes"}
_MUTATORS = {"append", "appendleft", "pop", "popleft", "clear", "extend", "remove"}


def _queue_edits(path) -> list[str]:
    """Lines that assign a SlotQueue field or mutate its deques in place."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign):
            targets = [node.target]
        found += [f"{path.name}:{t.lineno}" for t in targets
                  if isinstance(t, ast.Attribute) and t.attr in _FIELDS
                  and not (isinstance(t.value, ast.Name) and t.value.id == "self")]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in _MUTATORS and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr in ("items", "unreleased")):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_backends_change_queues_only_through_slot_queue_methods(tmp_path):

    root = ROOT
    files = [p for d in ("sim", "exec") for p in sorted((root / d).rglob("*.py"))
             if p.name != "queues.py"]
    assert [e for p in files for e in _queue_edits(p)] == []
    probe = tmp_path / "probe.py"  # the checker sees edits like DistState's old ones
    probe.write_text("q.held -= 1\nq.unreleased.popleft()\nq.items.append(x)\n"
                     "self.held = 0\nd.items()\n", encoding="utf-8")
    assert _queue_edits(probe) == ["probe.py:1", "probe.py:2", "probe.py:3"]
