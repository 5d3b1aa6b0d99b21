"""Metrics straight from the fast path's arrays, without building a trace.

The same definitions as :func:`pipefill.traces.metrics.compute_metrics` (DESIGN.md), for
one session's schedule: the steady window after the warm-up, period (mean emit gap),
its median, fps, per-chunk stage busy time and OverlapScore, overlap_window, bubbles,
TTFF, latency percentiles, mesh idle gaps, deadline misses, queue depths, bytes and
memory in flight (queue changes at one instant in recording order, as in the fast
path's trace). ``tests/sim/fast/test_fast_metrics.py`` checks every key against
``compute_metrics`` on the same run's trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from pipefill.sim.fast.path import Timed
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.metrics import (
    BURSTY_TOLERANCE,
    SUMMARY_KEYS,
    clamp_unit,
    overlap_window,
    steady_window,
)


@dataclass(frozen=True)
class Groups:
    """Values grouped by chunk, prepared once per plan: ``perm`` sorts the values by
    chunk, ``starts`` are where each of ``keys`` (the chunks, ascending) begins. A
    min/max per chunk is then one ``reduceat`` (``ufunc.at`` is many times slower)."""

    perm: np.ndarray
    starts: np.ndarray
    keys: np.ndarray

    @staticmethod
    def of(chunks: np.ndarray) -> Groups:
        perm = np.argsort(chunks, kind="stable")
        ordered = chunks[perm]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(ordered) \
            else np.zeros(0, np.int64)
        return Groups(perm, starts, ordered[starts])

    def reduce(self, ufunc: np.ufunc, values: np.ndarray, fill: float, size: int) -> np.ndarray:
        """``out[k]`` = ``ufunc`` over the values of chunk k (``fill`` where it has none)."""
        out = np.full(size, fill)
        if len(self.keys):
            out[self.keys] = ufunc.reduceat(values[self.perm], self.starts)
        return out


@dataclass(frozen=True)
class MetricIndex:
    """What the metrics read from a plan, independent of timing (build once per plan).

    ``emit_*``: session 0's emit marks (node, chunk); ``input_node``: its input marks,
    ``input_groups`` grouping them by chunk; ``s0``/``s1``: one row per item of a
    compute call (its node, chunk, the call's item count) on ``stage0`` (and its
    per-session copies) and on ``stage1``; ``s1_nodes``: stage1's own items' nodes,
    ``s1_groups`` grouping them by chunk (mesh idle); ``stage_nodes``: compute nodes
    per stage (bubbles, overlap_window).
    """

    emit_node: np.ndarray
    emit_chunk: np.ndarray
    input_node: np.ndarray
    s0: tuple[np.ndarray, np.ndarray, np.ndarray]
    s1: tuple[np.ndarray, np.ndarray, np.ndarray]
    s1_nodes: np.ndarray
    stage_nodes: dict[str, np.ndarray]
    chunks: int
    input_groups: Groups
    s1_groups: Groups


def metric_index(timed: Timed) -> MetricIndex:
    plan = timed.plan
    marks = plan.schedule.marks
    emits = [(m.node, m.tag.chunk) for m in marks if m.name == "emit" and m.tag.session == 0]
    inputs = [(m.node, m.tag.chunk) for m in marks if m.name == "input" and m.tag.session == 0]
    nodes = np.flatnonzero(plan.kind == 1)
    stage = np.array([plan.schedule.nodes[i].track for i in nodes], dtype=object)
    count = plan.item_ptr[nodes + 1] - plan.item_ptr[nodes]
    item_node = np.repeat(nodes, count)
    item_count = np.repeat(count, count).astype(float)
    item_stage = np.repeat(stage, count)
    item_chunk = np.concatenate([plan.item_chunk[plan.item_ptr[i]:plan.item_ptr[i + 1]]
                                 for i in nodes]) if len(nodes) else np.zeros(0, np.int64)

    def on(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sel = np.array([str(x) == name or str(x).startswith(name + ".") for x in item_stage],
                       dtype=bool)
        return item_node[sel], item_chunk[sel], item_count[sel]

    exact = item_stage == "stage1"
    top = max([c for _, c in emits] + [int(item_chunk.max()) if len(item_chunk) else 0]) + 2
    input_chunk = np.array([c for _, c in inputs], dtype=np.int64)
    return MetricIndex(
        np.array([n for n, _ in emits], dtype=np.int64), np.array([c for _, c in emits]),
        np.array([n for n, _ in inputs], dtype=np.int64),
        on("stage0"), on("stage1"), item_node[exact],
        {str(x): nodes[stage == x] for x in sorted(set(stage))}, top,
        Groups.of(input_chunk), Groups.of(item_chunk[exact]))


def fast_metrics(timed: Timed, column: int, sc: Scenario,
                 index: MetricIndex | None = None) -> dict[str, Any]:
    """Summary metrics of configuration ``column`` (single-session schedules)."""
    ix = index or metric_index(timed)
    # one configuration's column, contiguous: every lookup below is a gather over it
    start = np.ascontiguousarray(timed.start[:, column])
    end = np.ascontiguousarray(timed.end[:, column])
    t_all = _times(end, ix.emit_node)
    order = np.argsort(t_all, kind="stable")
    chunks, t_emit = ix.emit_chunk[order], t_all[order]
    t_in = ix.input_groups.reduce(np.minimum, _times(end, ix.input_node), np.inf, ix.chunks)
    res: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    missing: dict[str, str] = {}
    res.update(chunks=len(t_emit), warmup=sc.run.warmup, engine="fast", bubble={})
    if len(t_emit) and len(ix.input_node):
        res["ttff_ms"] = float(t_emit[0] - t_in.min())
    win = steady_window(t_emit, chunks, sc.run.warmup)
    _queues(res, timed, end, None if isinstance(win, str) else (win.t0, win.t1))
    if not isinstance(win, str):
        _rate(res, win.periods, win.t0, win.t1, sc.run.frames_per_chunk)
        _overlap(res, ix, start, end, win.chunks, win.periods)
        _window_fill(res, ix, start, end, win.t0, win.t1)
        arrived = t_in[chunks[win.first:]]
        lat = (t_emit[win.first:] - arrived)[np.isfinite(arrived)]
        if len(lat):
            for q, v in zip((50, 95, 99), np.percentile(lat, [50, 95, 99]), strict=True):
                res[f"latency_p{q}_ms"] = float(v)
        _mesh_idle(res, ix, start, end, chunks, win.first)
    _deadlines(res, sc, t_emit)
    res["missing"] = missing
    res.setdefault("memory", {})
    return res


def _queues(res: dict[str, Any], timed: Timed, end: np.ndarray,
            window: tuple[float, float] | None) -> None:
    """Queue depth max and time-weighted mean over the window (if there is one), peak
    bytes in flight and the memory per queue and receiving stage (as ``compute_metrics``
    reads counters: changes in time order, ties in recording order)."""
    c = timed.plan.counts
    res["queues"] = {}
    if not len(c.node):
        return
    t = _times(end, c.node)
    order = np.argsort(t, kind="stable")
    dsts = sorted(set(c.dst))
    stage_of = np.array([dsts.index(d) for d in c.dst], dtype=np.int64)
    t0, t1 = window if window is not None else (0.0, 0.0)
    seen, qmax, acc, width, qpeak, speak, total = _scan(
        t[order], c.queue[order], c.held[order], c.nbytes[order],
        stage_of, len(dsts), t0, t1)
    for i, name in enumerate(c.names):
        if seen[i]:
            res["queues"][name] = {"max": float(qmax[i])}
            if window is not None and t1 > t0 and width[i] > 0:
                res["queues"][name]["mean"] = float(acc[i] / width[i])
    for key in ("q_in", "q_out"):
        name = key if key in res["queues"] else f"{key}.0"
        if name in res["queues"]:
            res[f"{key}_max"] = int(res["queues"][name]["max"])
    res["peak_bytes_in_flight"] = int(total)
    queues = {name: int(qpeak[i]) for i, name in enumerate(c.names) if seen[i]}
    res["memory"] = {"peak_bytes": int(total), "queues": dict(sorted(queues.items())),
                     "stages": {d: int(speak[k]) for k, d in enumerate(dsts)
                                if seen[stage_of == k].any()}}


@njit(cache=True)
def _scan(t: np.ndarray, q: np.ndarray, dh: np.ndarray, db: np.ndarray, stage_of: np.ndarray,
          n_stages: int, t0: float, t1: float) -> tuple[Any, ...]:
    """One pass over the changes in time order: per queue whether it changed, its max
    depth, the depth integral and width of the window [t0, t1] after the first change;
    per queue and per receiving stage the peak bytes (never below 0); the peak total."""
    nq = len(stage_of)
    seen = np.zeros(nq, np.bool_)
    held, qmax = np.zeros(nq, np.int64), np.zeros(nq, np.int64)
    last = np.zeros(nq)
    acc, width = np.zeros(nq), np.zeros(nq)
    qbytes, qpeak = np.zeros(nq, np.int64), np.zeros(nq, np.int64)
    sbytes, speak = np.zeros(n_stages, np.int64), np.zeros(n_stages, np.int64)
    total, peak = 0, np.iinfo(np.int64).min
    for i in range(len(t)):
        k, s, now = q[i], stage_of[q[i]], min(max(t[i], t0), t1)
        if seen[k]:
            acc[k] += held[k] * (now - last[k])
            width[k] += now - last[k]
        held[k] += dh[i]
        qmax[k] = held[k] if not seen[k] else max(qmax[k], held[k])
        seen[k], last[k] = True, now
        qbytes[k] += db[i]
        sbytes[s] += db[i]
        total += db[i]
        qpeak[k], speak[s], peak = max(qpeak[k], qbytes[k]), max(speak[s], sbytes[s]), \
            max(peak, total)
    for k in range(nq):
        if seen[k]:
            acc[k] += held[k] * (t1 - last[k])
            width[k] += t1 - last[k]
    return seen, qmax, acc, width, qpeak, speak, peak


def _times(end: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    return np.where(nodes >= 0, end[np.maximum(nodes, 0)], 0.0)


def _rate(res: dict[str, Any], periods: np.ndarray, t0: float, t1: float, fpc: int) -> None:
    res["period_p50_ms"] = float(np.median(periods))
    if t1 - t0 <= 0:
        return
    res["period_ms"] = (t1 - t0) / len(periods)
    res["fps"] = fpc * 1000.0 / res["period_ms"]
    res["bursty"] = bool(abs(res["period_p50_ms"] - res["period_ms"]) / res["period_ms"]
                         > BURSTY_TOLERANCE)


def _busy(items: tuple[np.ndarray, np.ndarray, np.ndarray], start: np.ndarray,
          end: np.ndarray, size: int, chunks: np.ndarray) -> np.ndarray:
    """Per-chunk busy time: each item of a call is charged its share of the call."""
    node, chunk, count = items
    per = np.bincount(chunk, weights=(end[node] - start[node]) / count, minlength=size)
    return per[chunks]


def _overlap(res: dict[str, Any], ix: MetricIndex, start: np.ndarray, end: np.ndarray,
             chunks: np.ndarray, periods: np.ndarray) -> None:
    s0 = _busy(ix.s0, start, end, ix.chunks, chunks)
    s1 = _busy(ix.s1, start, end, ix.chunks, chunks)
    res["stage0_ms"], res["stage1_ms"] = float(np.median(s0)), float(np.median(s1))
    low = np.minimum(s0, s1)
    ok = low > 0
    if ok.any():
        hidden = np.maximum(0.0, s0 + s1 - periods)
        res["overlap_score"] = clamp_unit(float(np.median(hidden[ok] / low[ok])))


def _window_fill(res: dict[str, Any], ix: MetricIndex, start: np.ndarray, end: np.ndarray,
                 t0: float, t1: float) -> None:
    span = t1 - t0
    if span <= 0:
        return
    busy = {stage: float((np.clip(end[n], t0, t1) - np.clip(start[n], t0, t1)).sum())
            for stage, n in ix.stage_nodes.items()}  # one program per stage: no overlaps
    res["bubble"] = {s: 1.0 - b / span for s, b in busy.items()}
    res["overlap_window"] = overlap_window(busy, span)[0]


def _mesh_idle(res: dict[str, Any], ix: MetricIndex, start: np.ndarray, end: np.ndarray,
               chunks: np.ndarray, first: int) -> None:
    node = ix.s1_nodes
    tb0 = ix.s1_groups.reduce(np.minimum, start[node], np.inf, ix.chunks)
    tb1 = ix.s1_groups.reduce(np.maximum, end[node], -np.inf, ix.chunks)
    cur, prev = tb0[chunks[first:]], tb1[chunks[first - 1:-1]]
    ok = np.isfinite(cur) & np.isfinite(prev)
    res["mesh_idle_ms"] = float(np.median(np.maximum(0.0, cur - prev)[ok])) if ok.any() \
        else None


def _deadlines(res: dict[str, Any], sc: Scenario, t_emit: np.ndarray) -> None:
    target = sc.run.target_fps
    if target is None or not len(t_emit):
        return
    due = t_emit[0] + np.arange(len(t_emit)) * sc.run.frames_per_chunk * 1000.0 / target
    res["deadline_misses"] = int((t_emit > due + 1e-9).sum())
