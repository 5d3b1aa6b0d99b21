"""The analytic bound's event graph, derived from the recorded programs (no hand model).

A fixed-order schedule, recorded far enough (:mod:`pipefill.sim.schedule.derive`), repeats every
``u`` chunks once past its start: on every track (stage, lane, source) the node
``P`` positions later is the same activity ``u`` chunks later, waiting on the same
tracks. So one period is a :class:`~pipefill.sim.graph.maxplus.PeriodicGraph`: a family per
position of a track's period, instances indexed by chunk (``mult = u``), an arc per
predecessor. ``u`` is found from the recording itself (the smallest shift that maps the
steady schedule onto itself), times every cost pattern's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from pipefill.sim.errors import ScenarioError
from pipefill.sim.graph.periodic import PeriodicGraph
from pipefill.sim.scenario.costs import CostTable
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.schedule.derive import COMPUTE, INPUT, SEND, Node, Schedule, derive

#: longest period (chunks) the bound accepts
MAX_UNROLL = 512
#: chunks recorded before the modelled period, past every start-up transient
LEAD_IN = 64


@dataclass(frozen=True)
class Period:
    """Where one period sits in a recorded schedule: ``u`` chunks from ``base``; per
    track its nodes in order, the first one of the period and how many it has."""

    schedule: Schedule
    u: int
    base: int
    tracks: dict[str, list[int]]
    first: dict[str, int]
    count: dict[str, int]
    labels: dict[int, str]


def _tracks(s: Schedule) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, n in enumerate(s.nodes):
        out.setdefault(n.track, []).append(i)
    return out


def _periodic(s: Schedule, nodes: list[int], first: int, p: int, u: int, stop: int) -> bool:
    """Node i + p is node i's activity u chunks later, from just before the period to the
    node working on chunk ``stop`` (the whole recorded steady state, so a rare action,
    e.g. a flush every M chunks, is not missed)."""
    if p == 0:
        return True
    i = max(0, first - 2 * p)
    checked = 0
    while i + p < len(nodes) and (checked < 2 * p or s.nodes[nodes[i]].chunk < stop):
        a, b = s.nodes[nodes[i]], s.nodes[nodes[i + p]]
        if (a.kind, a.label, len(a.preds)) != (b.kind, b.label, len(b.preds)) \
                or b.chunk - a.chunk != u:
            return False
        for pa, pb in zip(a.preds, b.preds, strict=True):
            na, nb = s.nodes[pa], s.nodes[pb]
            if na.track != nb.track or nb.chunk - na.chunk != u:
                return False
        i += 1
        checked += 1
    return checked >= 2 * p


def _place(s: Schedule, tracks: dict[str, list[int]], base: int, u: int,
           stop: int) -> tuple[dict[str, int], dict[str, int]] | None:
    first: dict[str, int] = {}
    count: dict[str, int] = {}
    for name, nodes in tracks.items():
        inside = [i for i, n in enumerate(nodes) if base <= s.nodes[n].chunk < base + u]
        if not inside:
            continue
        first[name], count[name] = inside[0], len(inside)
        if not _periodic(s, nodes, inside[0], len(inside), u, stop):
            return None
    return first, count


def _period_of(s: Schedule, base: int, limit: int) -> tuple[int, dict[str, int],
                                                             dict[str, int]]:
    tracks = _tracks(s)
    for u in range(1, limit + 1):
        placed = _place(s, tracks, base, u, base + 3 * limit)
        if placed is not None:
            return u, *placed
    raise ScenarioError("policy", f"the schedule does not repeat within {limit} chunks "
                        "after its start (bound needs a periodic steady state)")


def with_patterns(sc: Scenario, unroll: int) -> int:
    """Chunks per period of a schedule that repeats every ``unroll`` chunks, priced with
    cost patterns that repeat on their own lengths (their least common multiple), within
    what the bound handles."""
    u = math.lcm(unroll, *(len(spec.pattern) for spec in sc.costs.values() if spec.pattern))
    if u > MAX_UNROLL:
        raise ScenarioError("costs", f"the schedule repeats only every {u} chunks "
                            f"(bound handles up to {MAX_UNROLL}); shorten the patterns")
    return u


def _recorded(sc: Scenario, chunks: int) -> Schedule:
    run = sc.run.model_copy(update={"chunks": chunks})
    return derive(sc.model_copy(update={"run": run}))


def _lead_in(sc: Scenario) -> int:
    caps = sum(q.capacity for q in sc.policy.queues(sc))
    return LEAD_IN + 4 * caps + 4 * sc.steps * len(sc.policy.stages(sc))


def period(sc: Scenario) -> Period:
    """Record ``sc`` (a fixed-order schedule) and locate one period of its steady state."""
    return _period_cached(_Key(sc))


@dataclass(frozen=True)
class _Key:
    """Hashable stand-in for a scenario: what the schedule's structure depends on."""

    sc: Scenario

    def _ident(self) -> str:
        return self.sc.model_dump_json(exclude={"raw"})

    def __hash__(self) -> int:
        return hash(self._ident())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self._ident() == other._ident()


@lru_cache(maxsize=32)
def _period_cached(key: _Key) -> Period:
    sc = key.sc
    base, guess = _lead_in(sc), 16
    while True:
        s = _recorded(sc, base + 4 * guess + 16)
        try:
            u_struct, _, _ = _period_of(s, base, guess)
            break
        except ScenarioError:
            if guess >= MAX_UNROLL:
                raise
            guess = min(MAX_UNROLL, guess * 4)
    u = with_patterns(sc, u_struct)
    base = u * math.ceil(base / u)
    if base + 4 * u + 16 > sc_chunks(s):  # the first recording is too short for u
        s = _recorded(sc, base + 4 * u + 16)
    placed = _place(s, _tracks(s), base, u, base + 3 * u)
    if placed is None:
        raise ScenarioError("policy", "the schedule is not periodic over its cost patterns")
    return Period(s, u, base, _tracks(s), *placed, _labels(s))


def sc_chunks(s: Schedule) -> int:
    """Chunks a recording covers."""
    return max((n.chunk for n in s.nodes), default=-1) + 1


def _labels(s: Schedule) -> dict[int, str]:
    """Compute nodes are named by phase, ``phase@stage`` when several stages run it."""
    where: dict[str, set[str]] = {}
    for n in s.nodes:
        if n.kind == COMPUTE:
            where.setdefault(n.label, set()).add(n.track)
    return {i: (f"{n.label}@{n.track}" if len(where[n.label]) > 1 else n.label)
            for i, n in enumerate(s.nodes) if n.kind == COMPUTE}


def priced_graph(sc: Scenario, table: CostTable) -> tuple[PeriodicGraph, int]:
    """One period of ``sc``'s derived event graph priced by ``table``; and ``u``."""
    per = period(sc)
    s, g = per.schedule, PeriodicGraph()
    pos = {n: (name, i) for name, nodes in per.tracks.items() for i, n in enumerate(nodes)}
    in_period = [per.tracks[t][per.first[t] + k] for t in per.first for k in range(per.count[t])]
    for i in in_period:
        _declare(g, per, pos, i)
    for i in in_period:
        g.node(_family(per, pos, i), s.nodes[i].chunk, _price(sc, table, s.nodes[i]))
    for i in in_period:
        node = s.nodes[i]
        for p in node.preds:
            g.arc((_family(per, pos, p), s.nodes[p].chunk), (_family(per, pos, i), node.chunk))
        if node.kind == INPUT:  # inputs arrive one input period apart
            track, k = pos[i]
            prev = per.tracks[track][k - 1]
            g.arc((_family(per, pos, prev), s.nodes[prev].chunk),
                  (_family(per, pos, i), node.chunk))
    return g, per.u


def _family(per: Period, pos: dict[int, tuple[str, int]], i: int) -> str:
    track, k = pos[i]
    return f"{track}#{(k - per.first[track]) % per.count[track]}"


def _declare(g: PeriodicGraph, per: Period, pos: dict[int, tuple[str, int]], i: int) -> None:
    n = per.schedule.nodes[i]
    stage = n.track.removeprefix("lane:")
    label = per.labels.get(i, n.label)
    g.family(_family(per, pos, i), per.u, label, n.label if n.kind == COMPUTE else None,
             stage, "k", work=n.kind != INPUT)


def _price(sc: Scenario, table: CostTable, n: Node) -> float:
    if n.kind == COMPUTE:
        assert n.action is not None
        cost = table.duration(n.action) if table.has(n.action.phase) else 0.0
        return sc.dispatch_ms(n.track) + cost  # the stage's gap before the span
    if n.kind == SEND:
        return sc.transport.time_ms(n.nbytes)
    if n.kind == INPUT:
        fps_in = sc.run.fps_in or 1.0
        return sc.run.frames_per_chunk * 1000.0 / fps_in
    return 0.0


def table_for(sc: Scenario, costs: dict | None = None) -> CostTable:  # type: ignore[type-arg]
    """Expected (or given) costs over the recorded chunks of ``sc``'s period."""
    per = period(sc)
    specs = costs if costs is not None else {p: s.expected() for p, s in sc.costs.items()}
    chunks = max(n.chunk for n in per.schedule.nodes) + 1
    return CostTable(specs, sc.run.sessions, chunks, seed=0)
