"""The executor's shared state: slot invariants, no missed wake-ups, stalls and timeouts."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipefill.exec.errors import Aborted
from pipefill.exec.threads.state import QueuedMessage, SharedState, StallDetected
from pipefill.sim.program.actions import INFER, Message, QueueSpec
from pipefill.traces.recorder import Recorder, Tag

SPECS = [QueueSpec("q_in", 2, "stage0", "stage1"), QueueSpec("q_out", 1, "stage1", "stage0")]


def _state(timeout_s: float = 2.0, specs: list[QueueSpec] = SPECS) -> SharedState:
    t0 = time.perf_counter()
    return SharedState(specs, 1, 10, True, Recorder(), lambda: (time.perf_counter() - t0) * 1e3,
                       timeout_s)


def _msg(chunk: int, nbytes: int = 10) -> QueuedMessage:
    return QueuedMessage(Message(INFER, Tag(0, chunk, chunk, 0), nbytes))


OPS = st.lists(st.sampled_from(["reserve", "put", "get", "release", "flush"]), max_size=60)


@given(ops=OPS)
@settings(max_examples=200, deadline=None)
def test_slot_invariants_hold_for_any_legal_sequence(ops):
    """Whatever a producer/consumer pair does, 0 <= held <= capacity, arrived items never
    exceed held slots, the version only grows, and bytes in flight are the unreleased bytes."""
    state = _state()
    q = state.queues["q_in"]
    reserved, taken, chunk = 0, 0, 0
    for op in ops:
        before = state.version
        if op == "reserve" and q.held < q.spec.capacity:
            state.reserve("p", "q_in")
            reserved += 1
        elif op == "put" and reserved:
            state.put("q_in", _msg(chunk), in_transit=False)
            reserved, chunk = reserved - 1, chunk + 1
        elif op == "get" and q.items:
            state.get("c", "q_in")
            taken += 1
        elif op == "release" and taken:
            state.release("q_in")
            taken -= 1
        elif op == "flush":
            state.flush("q_in")
        else:
            continue
        assert 0 <= q.held <= q.spec.capacity
        assert len(q.items) + q.in_transit <= q.held
        assert q.held == reserved + len(q.items) + taken
        assert state.version > before
    counters = state.rec.trace({}).counters("q_in")
    assert (counters["value"] <= 2).all()


def test_wait_change_returns_at_once_when_the_version_already_moved():
    """The version is compared under the lock, so a change between Poll and WaitChange
    is never missed (the waiter does not sleep until its timeout)."""
    state = _state(timeout_s=5.0)
    state.join("a")
    seen = state.view().version
    other = threading.Thread(target=state.reserve, args=("b", "q_in"))
    other.start()
    other.join()
    t = time.monotonic()
    state.wait_change("a", seen)
    assert time.monotonic() - t < 1.0


def test_a_waiter_wakes_on_a_change_made_while_it_sleeps():
    state = _state(timeout_s=5.0)
    state.join("a")
    state.join("b")
    seen = state.view().version
    woke = threading.Event()

    def waiter():
        state.wait_change("a", seen)
        woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)
    assert not woke.is_set()
    state.reserve("b", "q_in")
    assert woke.wait(2.0)
    thread.join()


def test_deadlock_is_detected_at_once_and_names_every_blocked_worker():
    state = _state(timeout_s=10.0)
    errors: list[str] = []

    def worker(who, queue):
        try:
            state.get(who, queue)
        except StallDetected as exc:
            errors.append(str(exc))
        finally:
            state.leave(who)

    for who in ("stage0", "stage1"):
        state.join(who)
    threads = [threading.Thread(target=worker, args=("stage0", "q_out")),
               threading.Thread(target=worker, args=("stage1", "q_in"))]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(5.0)
    assert time.monotonic() - t < 5.0
    assert len(errors) == 2
    assert any("stage0 blocked at" in e and "stage1 blocked at" in e for e in errors)


def test_a_transfer_in_flight_is_not_a_deadlock_but_a_wait_still_times_out():
    state = _state(timeout_s=0.2)
    state.join("stage0")
    state.reserve("stage0", "q_in")
    state.put("q_in", _msg(0), in_transit=True)  # its lane never delivers
    t = time.monotonic()
    with pytest.raises(StallDetected, match=r"timed out: waited 0\.2 s"):
        state.get("stage0", "q_out")
    assert 0.15 < time.monotonic() - t < 2.0


def test_a_timed_wait_change_returns_after_its_window_and_is_no_deadlock():
    state = _state(timeout_s=5.0)
    state.join("stage0")
    t = time.monotonic()
    state.wait_change("stage0", state.view().version, timeout_ms=30.0)
    assert 0.025 <= time.monotonic() - t < 2.0


def test_abort_wakes_waiters_with_aborted():
    state = _state(timeout_s=5.0)
    state.join("a")
    state.join("b")
    raised = []

    def waiter():
        try:
            state.get("a", "q_out")
        except Aborted:
            raised.append(True)

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.05)
    state.abort()
    th.join(2.0)
    assert raised == [True]


def test_local_buffer_put_arrives_without_a_send_span():
    """A queue without transport (a rolling window's resident chunks) has no send span."""
    local = QueueSpec("window", 2, "stage0", "stage0", transport=False)
    state = _state(specs=[local])
    state.reserve("w", "window")
    state.put("window", _msg(0), in_transit=False)
    assert len(state.queues["window"].items) == 1
    assert state.rec.trace({}).spans.empty
