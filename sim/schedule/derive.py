"""The schedule as data: a recorded run turned into a timed event graph (DESIGN.md rules).

:func:`derive` records a scenario's programs at zero time (:mod:`pipefill.sim.schedule.record`)
and turns every stage's action list into nodes whose *end* times obey

    end[v] = max(end[u] for u in preds[v]) + duration[v]        (0 when v has no preds)

with exactly these rules:

- consecutive actions on a stage: each node waits for the stage's previous node;
- the n-th Put on a queue -> its lane (one per sending stage, FIFO: a ``send`` node waits
  for the lane's previous one and lasts the transport time) -> the n-th Get of it;
- the n-th Release of a queue -> the (n + capacity)-th Reserve of it;
- WaitInput -> the input (a realtime source's ``input`` node ends at its arrival time);
- recompute/context inputs are program order on the stage that makes them.

A ``wait`` node (zero duration) stands for a Get, Reserve or WaitInput that waits on
another track; one that could only wait on its own stage is left out. Releases, Puts
and Marks take the time of their stage's last node. Nodes are numbered in the
recording's execution order, which is a topological order of the graph.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pipefill.sim.program.actions import (
    Compute,
    Flush,
    Get,
    Mark,
    Poll,
    Put,
    QueueSpec,
    Release,
    Reserve,
    WaitInput,
)
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.schedule.record import Recorded, record
from pipefill.traces.recorder import Tag

COMPUTE, SEND, WAIT, INPUT = "compute", "send", "wait", "input"
#: "no node": the time origin
ORIGIN = -1


@dataclass(frozen=True)
class Node:
    """One timed activity. ``track``: the stage (compute, wait), ``lane:<src>`` (send) or
    ``source`` (input); ``chunk``: the chunk it belongs to (its own tag, else the next
    compute on its track); ``preds``: nodes whose end it waits for."""

    kind: str
    track: str
    label: str
    chunk: int
    preds: tuple[int, ...]
    action: Compute | None = None
    nbytes: int = 0
    at_ms: float = 0.0
    tag: Tag | None = None
    queue: str = ""


@dataclass(frozen=True)
class MarkAt:
    """A mark (``emit``, ``input``, ``hard_cut``, ``drop``) at the end of ``node``."""

    name: str
    stage: str
    tag: Tag
    node: int


@dataclass(frozen=True)
class CountAt:
    """A queue change at the end of ``node`` (in recording order): slots held change by
    ``held`` and bytes in flight by ``nbytes``; the engine records a counter at each."""

    queue: str
    node: int
    held: int
    nbytes: int


@dataclass
class Schedule:
    """Every node of one run plus the marks and queue changes that hang off them."""

    nodes: list[Node]
    marks: list[MarkAt]
    stages: tuple[str, ...]
    queues: list[QueueSpec]
    choices: int = 0
    counts: list[CountAt] = field(default_factory=list)
    #: how many nodes existed when each mark (count) was recorded: where it sits in the
    #: recording, for the fast path's search of a repeating period
    mark_born: list[int] = field(default_factory=list)
    count_born: list[int] = field(default_factory=list)


@dataclass
class _Builder:
    sc: Scenario
    specs: dict[str, QueueSpec]
    nodes: list[Node] = field(default_factory=list)
    marks: list[MarkAt] = field(default_factory=list)
    clock: dict[str, int] = field(default_factory=dict)
    lanes: dict[str, int] = field(default_factory=dict)
    arrivals: dict[str, list[int]] = field(default_factory=dict)
    gets: dict[str, int] = field(default_factory=dict)
    releases: dict[str, list[int]] = field(default_factory=dict)
    reserves: dict[str, int] = field(default_factory=dict)
    input_nodes: dict[int, int] = field(default_factory=dict)
    polled: set[str] = field(default_factory=set)
    counts: list[CountAt] = field(default_factory=list)
    unreleased: dict[str, list[int]] = field(default_factory=dict)
    pending: dict[str, list[MarkAt]] = field(default_factory=dict)
    mark_born: list[int] = field(default_factory=list)
    count_born: list[int] = field(default_factory=list)

    def put(self, mark: MarkAt) -> None:
        self.marks.append(mark)
        self.mark_born.append(len(self.nodes))

    def add(self, node: Node) -> int:
        self.nodes.append(node)
        i = len(self.nodes) - 1
        if node.kind == WAIT:
            self.settle(node.track, i)
        return i

    def count(self, stage: str, queue: str, held: int, nbytes: int) -> None:
        self.counts.append(CountAt(queue, self.clock.get(stage, ORIGIN), held, nbytes))
        self.count_born.append(len(self.nodes))

    def settle(self, stage: str, at: int) -> None:
        """Input marks a polling stage deferred are taken at ``at``."""
        for m in self.pending.pop(stage, []):
            self.put(MarkAt(m.name, m.stage, m.tag, at))

    def wait(self, stage: str, dep: int, label: str, chunk: int = -1) -> None:
        """The stage waits for ``dep`` (nothing to add when it cannot wait on it)."""
        now = self.clock.get(stage, ORIGIN)
        if dep in (ORIGIN, now):
            return
        preds = (now, dep) if now != ORIGIN else (dep,)
        self.clock[stage] = self.add(Node(WAIT, stage, label, chunk, preds))

    def step(self, r: Recorded) -> None:
        handler = _HANDLERS.get(type(r.action))
        if handler is not None:
            handler(self, r)


def _compute(b: _Builder, r: Recorded) -> None:
    a = r.action
    assert isinstance(a, Compute)
    now = b.clock.get(r.stage, ORIGIN)
    b.settle(r.stage, now)
    b.polled.discard(r.stage)
    preds = (now,) if now != ORIGIN else ()
    b.clock[r.stage] = b.add(Node(COMPUTE, r.stage, a.phase, a.tag.chunk, preds, action=a,
                                  tag=a.tag))


def _reserve(b: _Builder, r: Recorded) -> None:
    a = r.action
    assert isinstance(a, Reserve)
    n = b.reserves.get(a.queue, 0)
    b.reserves[a.queue] = n + 1
    cap = b.specs[a.queue].capacity
    if n >= cap:
        b.wait(r.stage, b.releases[a.queue][n - cap], f"slot:{a.queue}")
    b.count(r.stage, a.queue, 1, 0)


def _release(b: _Builder, r: Recorded) -> None:
    a = r.action
    assert isinstance(a, Release)
    b.releases.setdefault(a.queue, []).append(b.clock.get(r.stage, ORIGIN))
    left = b.unreleased.get(a.queue, [])
    b.count(r.stage, a.queue, -1, -left.pop(0) if left else 0)


def _put(b: _Builder, r: Recorded) -> None:
    a = r.action
    assert isinstance(a, Put)
    spec = b.specs[a.queue]
    now = b.clock.get(r.stage, ORIGIN)
    b.unreleased.setdefault(a.queue, []).append(a.message.nbytes)
    b.count(r.stage, a.queue, 0, a.message.nbytes)
    if not spec.transport:
        b.arrivals.setdefault(a.queue, []).append(now)
        return
    lane = f"lane:{spec.src}"
    preds = tuple(p for p in (now, b.lanes.get(lane, ORIGIN)) if p != ORIGIN)
    node = b.add(Node(SEND, lane, f"send:{a.queue}", a.message.tag.chunk, preds,
                      nbytes=a.message.nbytes, tag=a.message.tag, queue=a.queue))
    b.lanes[lane] = node
    b.arrivals.setdefault(a.queue, []).append(node)


def _get(b: _Builder, r: Recorded) -> None:
    a = r.action
    assert isinstance(a, Get)
    n = b.gets.get(a.queue, 0)
    b.gets[a.queue] = n + 1
    b.wait(r.stage, b.arrivals[a.queue][n], a.wait or f"get:{a.queue}", r.result.tag.chunk)


def _flush(b: _Builder, r: Recorded) -> None:
    a = r.action
    assert isinstance(a, Flush)
    k = len(r.result)
    b.gets[a.queue] = b.gets.get(a.queue, 0) + k
    b.releases.setdefault(a.queue, []).extend([b.clock.get(r.stage, ORIGIN)] * k)
    gone = sum(m.nbytes for m in r.result)
    left = b.unreleased.get(a.queue, [])
    for m in r.result:  # the flushed messages leave the ledger (by size: same FIFO bytes)
        if m.nbytes in left:
            left.remove(m.nbytes)
    b.count(r.stage, a.queue, -k, -gone)


def _wait_input(b: _Builder, r: Recorded) -> None:
    a = r.action
    assert isinstance(a, WaitInput)
    run = b.sc.run
    if run.source == "saturated":
        mark = MarkAt("input", r.stage, a.tag, b.clock.get(r.stage, ORIGIN))
        if r.stage in b.polled:
            # a polling program took this step once its slot was free: its input is
            # asked for when the Reserve that follows is satisfied (it never blocks)
            b.pending.setdefault(r.stage, []).append(mark)
        else:
            b.put(mark)
        return
    k = a.tag.chunk
    if k not in b.input_nodes:
        b.input_nodes[k] = b.add(Node(INPUT, "source", "input", k, (),
                                      at_ms=run.input_time_ms(k)))
        for s in range(run.sessions):
            stage = b.sc.policy.source_stage(b.sc, s)
            b.put(MarkAt("input", stage, Tag(s, k), b.input_nodes[k]))
    b.wait(r.stage, b.input_nodes[k], "input", k)


def _poll(b: _Builder, r: Recorded) -> None:
    b.polled.add(r.stage)


def _mark(b: _Builder, r: Recorded) -> None:
    a = r.action
    assert isinstance(a, Mark)
    b.put(MarkAt(a.name, r.stage, a.tag, b.clock.get(r.stage, ORIGIN)))


_HANDLERS = {Compute: _compute, Reserve: _reserve, Release: _release, Put: _put, Get: _get,
             Flush: _flush, WaitInput: _wait_input, Mark: _mark, Poll: _poll}


def derive(sc: Scenario) -> Schedule:
    """Record ``sc``'s programs and derive its timed event graph (see the module doc)."""
    with _no_gc():  # many small, long-lived objects: collections would only rescan them
        return _derive(sc)


@contextmanager
def _no_gc() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _derive(sc: Scenario) -> Schedule:
    rec = record(sc)
    specs = sc.policy.queues(sc)
    b = _Builder(sc, {s.name: s for s in specs})
    for r in rec.steps:
        b.step(r)
    for stage in list(b.pending):
        for m in b.pending.pop(stage):
            b.put(m)
    nodes = _fill_chunks(b.nodes)
    return Schedule(nodes, b.marks, tuple(sc.policy.stages(sc)), specs, rec.choices,
                    b.counts, b.mark_born, b.count_born)


def _fill_chunks(nodes: list[Node]) -> list[Node]:
    """A wait without a chunk of its own takes the next chunk its track works on (the
    previous one at the end of the track)."""
    out = list(nodes)
    nxt: dict[str, int] = {}
    for i in range(len(out) - 1, -1, -1):
        n = out[i]
        if n.chunk >= 0:
            nxt[n.track] = n.chunk
        elif n.track in nxt:
            out[i] = _with_chunk(n, nxt[n.track])
    prev: dict[str, int] = {}
    for i, n in enumerate(out):
        if n.chunk < 0 and n.track in prev:
            out[i] = _with_chunk(n, prev[n.track])
        prev[n.track] = out[i].chunk
    return out


def _with_chunk(n: Node, chunk: int) -> Node:
    return Node(n.kind, n.track, n.label, chunk, n.preds, n.action, n.nbytes, n.at_ms, n.tag,
                n.queue)
