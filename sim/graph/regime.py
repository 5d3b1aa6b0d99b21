"""The regime of a timed event graph: after how many periods its steady state repeats.

In max-plus terms, the powers of the reduced matrix A become periodic,
A^(k+c) = lambda^c A^k for k large, where c is the *cyclicity*: for each strongly
connected part of the critical graph (the arcs on cycles of maximum mean) the gcd of
its cycle lengths, and the lcm of those over all parts. A simulated schedule repeats
every c periods, so a mean period over c periods equals the bound exactly.
"""

from __future__ import annotations

import math

import numpy as np


def cyclicity(r: np.ndarray, mean: float) -> int:
    """lcm over the critical graph's strongly connected parts of their cycle-length gcd."""
    h = len(r)
    scale = max(1.0, float(np.max(np.abs(r[np.isfinite(r)]))) if np.isfinite(r).any() else 1.0)
    tol = 1e-9 * scale * h
    rp = r - mean
    star = rp.copy()  # star[v, u]: best path weight u -> v (Floyd-Warshall, max-plus)
    for k in range(h):
        np.maximum(star, star[:, k:k + 1] + star[k:k + 1, :], out=star)
    crit = [[v for v in range(h) if np.isfinite(rp[v, u]) and rp[v, u] + star[u, v] > -tol]
            for u in range(h)]
    return _lcm_of_gcds(crit)


def _lcm_of_gcds(succ: list[list[int]]) -> int:
    """For each strongly connected part of a graph, the gcd of its cycle lengths; their lcm."""
    h = len(succ)
    comp = _scc(succ)
    result = 1
    for members in comp:
        inside = set(members)
        level = {members[0]: 0}
        queue = [members[0]]
        g = 0
        for u in queue:
            for v in succ[u]:
                if v not in inside:
                    continue
                if v not in level:
                    level[v] = level[u] + 1
                    queue.append(v)
                else:
                    g = math.gcd(g, level[u] + 1 - level[v])
        if g:
            result = result * g // math.gcd(result, g)
    return result if h else 1


def _scc(succ: list[list[int]]) -> list[list[int]]:
    """Strongly connected parts that contain a cycle (Kosaraju, iterative)."""
    h = len(succ)
    order = _finish_order(succ)
    pred: list[list[int]] = [[] for _ in range(h)]
    for u in range(h):
        for v in succ[u]:
            pred[v].append(u)
    comp_of = [-1] * h
    parts: list[list[int]] = []
    for root in reversed(order):
        if comp_of[root] >= 0:
            continue
        comp_of[root] = len(parts)
        members, todo = [root], [root]
        while todo:
            for v in pred[todo.pop()]:
                if comp_of[v] < 0:
                    comp_of[v] = len(parts)
                    members.append(v)
                    todo.append(v)
        parts.append(members)
    return [p for p in parts if len(p) > 1 or p[0] in succ[p[0]]]


def _finish_order(succ: list[list[int]]) -> list[int]:
    """Nodes in order of DFS completion (iterative, no recursion limit)."""
    h = len(succ)
    seen, order = [False] * h, []
    for start in range(h):
        if seen[start]:
            continue
        stack = [(start, iter(succ[start]))]
        seen[start] = True
        while stack:
            node, it = stack[-1]
            nxt = next((v for v in it if not seen[v]), None)
            if nxt is None:
                order.append(node)
                stack.pop()
            else:
                seen[nxt] = True
                stack.append((nxt, iter(succ[nxt])))
    return order
