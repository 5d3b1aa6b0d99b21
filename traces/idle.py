"""Each stage's idle time as labelled intervals: from its wait lane, or inferred.

A stage is busy while one of its ``compute``-lane spans runs (the metrics' busy time)
and idle otherwise. :func:`stage_pieces` cuts a stage's idle time into
:class:`Piece` s, each with one :class:`~pipefill.traces.waits.Cause`:

- covered by wait spans (the engine's, the executors' or a probe's ``stage.wait``):
  the wait's cause, exactly; where several waits of the stage overlap (programs that
  share a stage) the piece is split equally among them, so pieces never overlap;
- not covered, on a stage that records waits: ``unattributed`` (dispatch, host time);
- not covered, on a stage without waits: inferred from what became ready last before
  the stage's next compute (:func:`infer_gap`), marked ``inferred``;
- before the stage's first compute or after its last: ``fill_drain`` (the run's own
  fill and drain: there was no item to work on).

The pieces of a stage tile its idle time exactly: their lengths sum to it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipefill.traces.facts import PolicyFacts
from pipefill.traces.schema import WAIT_LANE
from pipefill.traces.waits import UNATTRIBUTED, Cause, classify

#: times closer than this (ms) are one instant (float noise of clocks)
EPS_MS = 1e-6
#: idle before a stage's first work or after its last: the run's own fill and drain
RUN_FILL = Cause("fill_drain", "the run's start", "run")
RUN_DRAIN = Cause("fill_drain", "the run's end", "run")


@dataclass(frozen=True)
class Piece:
    """Idle time of ``stage`` over [start, end) from ``cause``; ``weight`` (<= 1) is its
    share when several waits overlap; ``inferred``: not from a recorded wait."""

    stage: str
    start: float
    end: float
    cause: Cause
    weight: float = 1.0
    inferred: bool = False

    @property
    def ms(self) -> float:
        return (self.end - self.start) * self.weight


def busy_intervals(spans: pd.DataFrame, stage: str) -> np.ndarray:
    """The union of ``stage``'s compute-lane spans as sorted disjoint [start, end] rows."""
    sp = spans[(spans["stage"] == stage) & (spans["lane"] == "compute")]
    if not len(sp):
        return np.empty((0, 2))
    iv = sp[["start_ms", "end_ms"]].to_numpy(dtype=float)
    iv = iv[np.lexsort((iv[:, 1], iv[:, 0]))]
    out = [list(iv[0])]
    for s, e in iv[1:]:
        if s <= out[-1][1] + EPS_MS:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return np.array(out)


def gaps(busy: np.ndarray, t0: float, t1: float) -> list[tuple[float, float]]:
    """The idle intervals of [t0, t1] around the busy union."""
    out, at = [], t0
    for s, e in busy:
        if e <= t0 or s >= t1:
            continue
        if s > at + EPS_MS:
            out.append((at, min(s, t1)))
        at = max(at, e)
    if t1 > at + EPS_MS:
        out.append((at, t1))
    return out


class Waits:
    """One stage's labelled waits, sorted by start, for range queries."""

    def __init__(self, rows: list[tuple[float, float, Cause]]) -> None:
        rows = sorted(rows, key=lambda r: (r[0], r[1]))
        self.rows = rows
        self.starts = np.array([r[0] for r in rows])
        self.reach = np.maximum.accumulate(np.array([r[1] for r in rows])) if rows else \
            np.empty(0)

    def overlapping(self, a: float, b: float) -> list[tuple[float, float, Cause]]:
        i = int(np.searchsorted(self.starts, b, side="left")) - 1
        out = []
        while i >= 0 and self.reach[i] > a:
            s, e, c = self.rows[i]
            if e > a:
                out.append((max(s, a), min(e, b), c))
            i -= 1
        return out[::-1]


def _covered(stage: str, gap: tuple[float, float], waits: Waits
             ) -> tuple[list[Piece], list[tuple[float, float]]]:
    """Split one gap by the waits that overlap it: covered pieces and the uncovered rest."""
    a, b = gap
    inside = waits.overlapping(a, b)
    if not inside:
        return [], [gap]
    cuts = sorted({a, b, *(s for s, _, _ in inside), *(e for _, e, _ in inside)})
    pieces, rest = [], []
    for lo, hi in itertools.pairwise(cuts):
        if hi - lo <= 0:
            continue
        active = [c for s, e, c in inside if s <= lo and e >= hi]
        if not active:
            rest.append((lo, hi))
            continue
        pieces += [Piece(stage, lo, hi, c, 1.0 / len(active)) for c in active]
    return pieces, rest


class Evidence:
    """What inference reads, indexed once: compute spans per stage, every span per
    (session, chunk), input marks per (session, chunk), depth counters per queue."""

    def __init__(self, events: pd.DataFrame, facts: PolicyFacts,
                 realtime: bool = False) -> None:
        self.facts = facts
        #: input marks are arrivals (a realtime source); a saturated source's input mark
        #: is taken when the stage asks for it, so it tells nothing about waiting
        self.realtime = realtime
        sp = events[events["kind"] == "span"]
        sp = sp[sp["lane"] != WAIT_LANE]
        self.spans = sp
        comp = sp[sp["lane"] == "compute"].sort_values("start_ms", kind="stable")
        self.compute = {str(s): g for s, g in comp.groupby("stage", sort=False)}
        self.starts = {s: g["start_ms"].to_numpy(dtype=float) for s, g in self.compute.items()}
        self.by_chunk = {k: g for k, g in sp.groupby(["session", "chunk"], sort=False)}
        inp = events[(events["kind"] == "mark") & (events["name"] == "input")]
        self.inputs = {k: float(g["start_ms"].min())
                       for k, g in inp.groupby(["session", "chunk"], sort=False)}
        ctr = events[events["kind"] == "counter"]
        self.counters = {str(n): (g["start_ms"].to_numpy(dtype=float),
                                  g["value"].to_numpy(dtype=float))
                         for n, g in ctr.groupby("name", sort=False)}

    def next_compute(self, stage: str, t: float) -> pd.Series | None:
        starts = self.starts.get(stage)
        if starts is None:
            return None
        i = int(np.searchsorted(starts, t - EPS_MS, side="left"))
        return None if i >= len(starts) else self.compute[stage].iloc[i]


def _arrival(ev: Evidence, stage: str, nxt: pd.Series) -> tuple[float, Cause] | None:
    """When ``nxt``'s chunk last came in from another stage (a send, else its compute)."""
    grp = ev.by_chunk.get((nxt["session"], nxt["chunk"]))
    if grp is None:
        return None
    b = float(nxt["start_ms"])
    mine = (grp["end_ms"] <= b + EPS_MS) & (grp["stage"] != stage)
    sends = grp[mine & (grp["lane"] == "comm")]
    other = sends if len(sends) else grp[mine & (grp["lane"] == "compute")]
    if not len(other):
        return None
    row = other.loc[other["end_ms"].idxmax()]
    src = str(row["stage"])
    q = next((q.name for q in ev.facts.queues if q.src == src and q.dst == stage), "")
    return float(row["end_ms"]), Cause("starved", q or f"input from {src}", "inferred")


def _input(ev: Evidence, nxt: pd.Series) -> tuple[float, Cause] | None:
    if not ev.realtime:
        return None
    key = (nxt["session"], nxt["chunk"])
    grp, t = ev.by_chunk.get(key), ev.inputs.get(key)
    if grp is None or t is None:
        return None
    work = grp[grp["lane"] == "compute"]
    if float(work["start_ms"].min()) < float(nxt["start_ms"]) - EPS_MS:
        return None  # not the chunk's first work: its input was used before
    return t, Cause("source", "", "inferred")


def _slot(ev: Evidence, stage: str, a: float, b: float) -> tuple[float, Cause] | None:
    """An output queue of ``stage`` at capacity at ``a``: ready when a slot freed."""
    for q in ev.facts.queues:
        if q.src != stage or q.name not in ev.counters:
            continue
        t, v = ev.counters[q.name]
        i = int(np.searchsorted(t, a + EPS_MS, side="right"))
        if i == 0 or v[i - 1] < q.capacity:
            continue
        freed = np.flatnonzero(v[i:] < q.capacity)
        if len(freed) and t[i + freed[0]] <= b + EPS_MS:
            return float(t[i + freed[0]]), Cause("blocked", q.name, "inferred")
    return None


def infer_gap(ev: Evidence, stage: str, gap: tuple[float, float]) -> list[Piece]:
    """An uncovered gap: the part up to when its next compute's last need became ready
    goes to that need (inferred); the rest is unattributed."""
    a, b = gap
    nxt = ev.next_compute(stage, b)
    found = [] if nxt is None else [
        x for x in (_arrival(ev, stage, nxt), _input(ev, nxt),
                    _slot(ev, stage, a, float(nxt["start_ms"])))
        if x is not None and x[0] > a + EPS_MS]
    if not found:
        return [Piece(stage, a, b, UNATTRIBUTED, inferred=True)]
    ready, cause = max(found, key=lambda x: x[0])
    mid = min(ready, b)
    out = [Piece(stage, a, mid, cause, inferred=True)]
    if b > mid + EPS_MS:
        out.append(Piece(stage, mid, b, UNATTRIBUTED, inferred=True))
    return out


def stage_pieces(ev: Evidence, waits: pd.DataFrame, stage: str,
                 window: tuple[float, float]) -> list[Piece]:
    """The labelled idle pieces of ``stage`` within ``window`` (module docstring)."""
    t0, t1 = window
    comp = ev.compute.get(stage)
    busy = busy_intervals(comp, stage) if comp is not None else np.empty((0, 2))
    own = waits[waits["stage"] == stage]
    labelled = Waits([(float(s), float(e), classify(str(n), stage, int(c), ev.facts))
                      for s, e, n, c in zip(own["start_ms"], own["end_ms"], own["name"],
                                            own["chunk"], strict=True) if e > s])
    out: list[Piece] = []
    first, last = (busy[0, 0], busy[-1, 1]) if len(busy) else (np.inf, -np.inf)
    for gap in gaps(busy, t0, t1):
        if gap[0] >= last - EPS_MS or gap[1] <= first + EPS_MS:  # the run's fill or drain
            out.append(Piece(stage, *gap, RUN_DRAIN if gap[0] >= last - EPS_MS else RUN_FILL))
            continue
        covered, rest = _covered(stage, gap, labelled)
        out += covered
        for r in rest:
            out += ([Piece(stage, r[0], r[1], UNATTRIBUTED)] if len(own)
                    else infer_gap(ev, stage, r))
    return sorted(out, key=lambda p: (p.start, p.end))


def wait_rows(events: pd.DataFrame) -> pd.DataFrame:
    return events[(events["kind"] == "span") & (events["lane"] == WAIT_LANE)]
