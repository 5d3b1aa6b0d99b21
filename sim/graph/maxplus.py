"""Timed event graphs of periodic schedules and their maximum cycle ratio.

A schedule with a fixed order on every stage is a timed event graph: each activity
instance (``build`` of chunk k, the tick t of a stage, ...) starts at the latest of its
predecessors' start plus a weight, ``x_v(k) >= x_u(k - lag) + w``. One *period* of the
schedule is unrolled into families of nodes (``mult`` instances per period); an arc
between two instances gets ``lag`` = how many periods apart they are. In max-plus
algebra the steady-state time per period is the maximum over cycles of
``sum(w) / sum(lag)`` (the cycle ratio), and a cycle attaining it is *critical*: it
names what bounds the period.

The ratio is computed exactly on an explicit cycle: arcs of lag > 1 are split into unit
lags, zero-lag paths are folded in (their graph must be acyclic: a cycle without lag is
a deadlock), Karp's algorithm finds the maximum cycle mean of the reduced matrix and
the walk that realises it yields a critical cycle, which is mapped back to the original
nodes and summed there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from pipefill.sim.graph.periodic import NEG, Cycle, DeadlockCycle, Node, PeriodicGraph, Step
from pipefill.sim.graph.regime import cyclicity


@dataclass
class _Expanded:
    """Nodes (original + dummies splitting lags), zero-lag and unit-lag arcs."""

    names: list[Node | None]
    zero: list[tuple[int, int, float]]
    unit: list[tuple[int, int, float]]


def _retime(g: PeriodicGraph) -> dict[Node, int]:
    """Shifts p with lag + p[src] - p[dst] >= 0 on every arc (Bellman-Ford on lags).

    A cycle whose lags sum below zero waits on its own future: no schedule exists.
    """
    shift = dict.fromkeys(g.durations, 0)
    for _ in range(len(shift) + 1):
        changed = False
        for (s, d, lag), _w in g.arcs.items():
            if shift[s] + lag < shift[d]:
                shift[d] = shift[s] + lag
                changed = True
        if not changed:
            return shift
    raise ValueError("a cycle of the schedule waits on its own future (negative lag)")


def _expand(g: PeriodicGraph, shift: dict[Node, int]) -> _Expanded:
    nodes = sorted(g.durations)
    idx = {n: i for i, n in enumerate(nodes)}
    names: list[Node | None] = list(nodes)
    zero: list[tuple[int, int, float]] = []
    unit: list[tuple[int, int, float]] = []
    for (s, d, raw_lag), w in sorted(g.arcs.items()):
        lag = raw_lag + shift[s] - shift[d]
        if lag == 0:
            zero.append((idx[s], idx[d], w))
            continue
        prev, weight = idx[s], w
        for step in range(lag):
            if step == lag - 1:
                nxt = idx[d]
            else:
                names.append(None)
                nxt = len(names) - 1
            unit.append((prev, nxt, weight))
            prev, weight = nxt, 0.0
    return _Expanded(names, zero, unit)


def _topo(n: int, zero: list[tuple[int, int, float]], names: list[Node | None]) -> list[int]:
    succ: dict[int, list[int]] = defaultdict(list)
    indeg = [0] * n
    for s, d, _ in zero:
        succ[s].append(d)
        indeg[d] += 1
    order = [i for i in range(n) if indeg[i] == 0]
    for i in order:
        for d in succ[i]:
            indeg[d] -= 1
            if indeg[d] == 0:
                order.append(d)
    if len(order) < n:
        raise DeadlockCycle(_zero_cycle(n, succ, set(order), names))
    return order


def _zero_cycle(n: int, succ: dict[int, list[int]], done: set[int],
                names: list[Node | None]) -> list[str]:
    """A cycle among the nodes left over by the topological sort."""
    left = [i for i in range(n) if i not in done]
    cur, seen = left[0], []
    while cur not in seen:
        seen.append(cur)
        cur = next(d for d in succ[cur] if d not in done)
    cyc = [*seen[seen.index(cur):], cur]
    return [f"{names[i][0]}[{names[i][1]}]" if names[i] else "lag" for i in cyc]  # type: ignore[index]


@dataclass
class Solution:
    """The maximum cycle ratio (time per period) and a critical cycle attaining it."""

    ratio: float
    cycle: Cycle
    reduced: np.ndarray
    karp_mean: float

    def cyclicity(self) -> int:
        """Periods after which the steady-state regime repeats (critical-graph cyclicity)."""
        return cyclicity(self.reduced, self.karp_mean)


def solve(g: PeriodicGraph) -> Solution:
    """Maximum cycle ratio of ``g`` and a critical cycle; DeadlockCycle if a cycle has no lag."""
    shift = _retime(g)
    ex = _expand(g, shift)
    n = len(ex.names)
    order = _topo(n, ex.zero, ex.names)
    closure = _zero_closure(n, ex.zero, order)
    heads = sorted({d for _, d, _ in ex.unit})
    if not heads:
        raise ValueError("the schedule has no recurrence (no arc with lag)")
    pos = {h: i for i, h in enumerate(heads)}
    reduced = np.full((len(heads), len(heads)), NEG)
    via = np.full((len(heads), len(heads)), -1, dtype=int)
    for ui, (a, b, w) in enumerate(ex.unit):
        cand = w + closure[a, heads]
        row = reduced[pos[b]]
        better = cand > row
        row[better] = cand[better]
        via[pos[b], better] = ui
    mean, walk = _karp(reduced)
    best = _best_cycle_on_walk(walk, reduced)
    cycle = _map_back(g, ex, closure, heads, via, best, shift)
    return Solution(cycle.ratio, cycle, reduced, mean)


def _zero_closure(n: int, zero: list[tuple[int, int, float]], order: list[int]) -> np.ndarray:
    """closure[i, m] = longest zero-lag path weight from m to i (0 for i == m)."""
    closure = np.full((n, n), NEG)
    np.fill_diagonal(closure, 0.0)
    into: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for s, d, w in zero:
        into[d].append((s, w))
    for i in order:
        for s, w in into[i]:
            np.maximum(closure[i], closure[s] + w, out=closure[i])
    return closure


def _karp(r: np.ndarray) -> tuple[float, list[int]]:
    """Karp's maximum cycle mean of ``r`` (r[v, u]: weight u -> v) and the optimal walk."""
    h = len(r)
    dist = np.full((h + 1, h), NEG)
    dist[0] = 0.0
    pred = np.zeros((h + 1, h), dtype=int)
    for k in range(1, h + 1):
        cand = r + dist[k - 1][None, :]
        pred[k] = np.argmax(cand, axis=1)
        dist[k] = cand[np.arange(h), pred[k]]
    best, best_v = NEG, -1
    for v in range(h):
        if dist[h, v] == NEG:
            continue
        ks = [k for k in range(h) if dist[k, v] > NEG]
        worst = min((dist[h, v] - dist[k, v]) / (h - k) for k in ks)
        if worst > best:
            best, best_v = worst, v
    if best_v < 0:
        raise ValueError("the schedule has no cycle")
    walk = [best_v]
    for k in range(h, 0, -1):
        walk.append(int(pred[k, walk[-1]]))
    return float(best), walk[::-1]


def _best_cycle_on_walk(walk: list[int], r: np.ndarray) -> list[int]:
    """The cycle of highest mean among those the walk closes (a critical one)."""
    best: list[int] = []
    best_mean = NEG
    last: dict[int, int] = {}
    for i, v in enumerate(walk):
        if v in last:
            cyc = walk[last[v]:i + 1]
            w = sum(r[b, a] for a, b in pairwise(cyc))
            if w / (len(cyc) - 1) > best_mean:
                best_mean, best = w / (len(cyc) - 1), cyc
        last[v] = i
    return best


#: an edge of an expanded path: (from, to, weight, crosses a period boundary)
Edge = tuple[int, int, float, bool]


def _map_back(g: PeriodicGraph, ex: _Expanded, closure: np.ndarray, heads: list[int],
              via: np.ndarray, red_cycle: list[int], shift: dict[Node, int]) -> Cycle:
    """Expand a cycle of the reduced matrix into original nodes and sum it exactly."""
    into: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for s, d, w in ex.zero:
        into[d].append((s, w))
    edges: list[Edge] = []
    for a_pos, b_pos in pairwise(red_cycle):
        a_unit, b_unit, w = ex.unit[via[b_pos, a_pos]]
        edges.extend(_zero_path(into, closure, heads[a_pos], a_unit))
        edges.append((a_unit, b_unit, w, True))
    return _cycle_of(g, ex, edges, shift)


def _zero_path(into: dict[int, list[tuple[int, float]]], closure: np.ndarray,
               src: int, dst: int) -> list[Edge]:
    """The longest zero-lag path src ~> dst, as edges."""
    edges: list[Edge] = []
    cur = dst
    while cur != src:
        _, prev, w = max((closure[s, src] + w, s, w) for s, w in into[cur]
                         if closure[s, src] > NEG)
        edges.append((prev, cur, w, False))
        cur = prev
    return edges[::-1]


def _cycle_of(g: PeriodicGraph, ex: _Expanded, edges: list[Edge],
              shift: dict[Node, int]) -> Cycle:
    """Walk the expanded cycle over original nodes, tracking instance indices and lags.

    The walk counts retimed periods; a node's own instance is ``period + shift``.
    """
    steps: list[Step] = []
    weight, period = 0.0, 0
    for a, _, w, crosses in edges:
        weight += w
        name = ex.names[a]
        if name is not None:
            fam = g.families[name[0]]
            inst = (period + shift[name]) * fam.mult + name[1]
            steps.append(Step(name[0], inst, g.durations[name]))
        period += crosses
    return Cycle(tuple(steps), weight, period)
