"""Chains: what the stage upstream did while a stage was starved.

A stage starved on a queue waits for the stage that fills it. :func:`follow` takes
the starved pieces of a stage and measures, over exactly those instants, the upstream
stage's compute (by phase) and its own idle pieces (by cause), so a report can say
``starved on q_in <- stage0 busy 93% (decode 64%, encode 15%), waiting 7% (dependency
...)``: the hop from a symptom to its cause.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipefill.traces.facts import PolicyFacts
from pipefill.traces.idle import Evidence, Piece
from pipefill.traces.waits import Cause

#: shares below this are left out of a chain's words
SHOWN = 0.05


@dataclass(frozen=True)
class Chain:
    """Over ``ms`` of a stage's starved time: the ``upstream`` stage's busy ms by phase,
    its idle ms by cause (the cause's words), and ``own``: that stage's dominant idle
    cause over the whole window when it is a dependency or the source (what its work
    was waiting for), else ""."""

    upstream: str
    ms: float
    busy: dict[str, float] = field(default_factory=dict)
    waiting: dict[str, float] = field(default_factory=dict)
    own: str = ""

    @property
    def busy_share(self) -> float:
        return sum(self.busy.values()) / self.ms if self.ms > 0 else 0.0

    def dominant_wait(self) -> str:
        return max(self.waiting, key=lambda k: self.waiting[k]) if self.waiting else ""

    def text(self) -> str:
        if self.ms <= 0:
            return f"<- {self.upstream}"
        bits = []
        if self.busy:
            phases = ", ".join(f"{p} {ms / self.ms:.0%}" for p, ms in
                               sorted(self.busy.items(), key=lambda x: -x[1])
                               if ms / self.ms >= SHOWN)
            bits.append(f"busy {self.busy_share:.0%}" + (f" ({phases})" if phases else ""))
        waits = [(w, ms) for w, ms in sorted(self.waiting.items(), key=lambda x: -x[1])
                 if ms / self.ms >= SHOWN]
        if waits:
            bits.append("waiting: " + ", ".join(f"{w} {ms / self.ms:.0%}" for w, ms in waits))
        own = f"; {self.upstream} itself waits on {self.own}" if self.own else ""
        return f"<- {self.upstream} " + ", ".join(bits) + own

    def to_json(self) -> dict[str, Any]:
        return {"upstream": self.upstream, "ms": self.ms, "busy": self.busy,
                "waiting": self.waiting, "own": self.own, "text": self.text()}


def upstream_of(facts: PolicyFacts, stage: str, cause: Cause, stages: list[str]) -> str | None:
    """The stage that fills the queue ``stage`` starved on (from the policy's queues, an
    inferred ``input from X``, or the other stage of a two-stage trace)."""
    q = facts.queue(cause.target)
    if q is not None and q.src in stages and q.src != stage:
        return q.src
    if cause.target.startswith("input from "):
        return cause.target.removeprefix("input from ")
    others = [s for s in stages if s != stage]
    return others[0] if len(others) == 1 else None


class _Intervals:
    """Intervals sorted by start (mostly disjoint) and their overlaps with a range."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        self.starts, self.ends = starts, ends
        self.reach = np.maximum.accumulate(ends) if len(ends) else ends

    def overlap(self, a: float, b: float) -> list[tuple[int, float]]:
        """(index, overlap ms) of every interval meeting [a, b]."""
        i = int(np.searchsorted(self.starts, b, side="left")) - 1
        out = []
        while i >= 0 and self.reach[i] > a:
            o = min(self.ends[i], b) - max(self.starts[i], a)
            if o > 0:
                out.append((i, o))
            i -= 1
        return out


def follow(ev: Evidence, pieces: dict[str, list[Piece]], stage: str, cause: Cause,
           stages: list[str]) -> Chain | None:
    """The chain of ``stage``'s pieces of ``cause`` to the stage upstream."""
    up = upstream_of(ev.facts, stage, cause, stages)
    if up is None:
        return None
    mine = [p for p in pieces[stage] if p.cause == cause]
    comp = ev.compute.get(up)
    busy: dict[str, float] = defaultdict(float)
    if comp is not None:
        calls = comp.drop_duplicates(["name", "start_ms", "end_ms"])
        spans = _Intervals(calls["start_ms"].to_numpy(float), calls["end_ms"].to_numpy(float))
        names = calls["name"].astype(str).to_numpy()
        for p in mine:
            for i, o in spans.overlap(p.start, p.end):
                busy[names[i]] += o * p.weight
    theirs = pieces.get(up, [])
    idle = _Intervals(np.array([q.start for q in theirs]), np.array([q.end for q in theirs]))
    waiting: dict[str, float] = defaultdict(float)
    for p in mine:
        for i, o in idle.overlap(p.start, p.end):
            waiting[theirs[i].cause.describe()] += o * p.weight * theirs[i].weight
    return Chain(up, sum(p.ms for p in mine), dict(busy), dict(waiting), _own(theirs))


def _own(theirs: list[Piece]) -> str:
    total = sum(q.ms for q in theirs)
    dep: dict[str, float] = defaultdict(float)
    for q in theirs:
        if q.cause.cause in ("dependency", "source"):
            dep[q.cause.describe()] += q.ms
    if not dep or total <= 0:
        return ""
    words, ms = max(dep.items(), key=lambda x: x[1])
    return words if ms >= 0.5 * total else ""


def late_wakeups(pieces: dict[str, list[Piece]], facts: PolicyFacts,
                 stages: list[str]) -> dict[str, list[Piece]]:
    """Starved time during which the stage upstream was blocked on that very queue (it
    was full): the item was there, the stage only woke late (a busy core, the GIL). A
    measured trace shows it; such time is host time, ``unattributed``, not starvation."""
    out = dict(pieces)
    for stage, mine in pieces.items():
        fixed: list[Piece] = []
        for p in mine:
            up = upstream_of(facts, stage, p.cause, stages) if p.cause.cause == "starved" \
                else None
            full = [(q.start, q.end) for q in pieces.get(up or "", [])
                    if q.cause.cause == "blocked" and q.cause.target == p.cause.target
                    and q.start < p.end and q.end > p.start]
            fixed += _split(p, full) if full else [p]
        out[stage] = fixed
    return out


def _split(p: Piece, full: list[tuple[float, float]]) -> list[Piece]:
    late = Cause("unattributed", f"woke late: {p.cause.target} was full", "late")
    out, at = [], p.start
    for a, b in sorted(full):
        a, b = max(a, at), min(b, p.end)
        if b <= a:
            continue
        if a > at:
            out.append(replace(p, start=at, end=a))
        out.append(replace(p, start=a, end=b, cause=late))
        at = b
    if p.end > at:
        out.append(replace(p, start=at, end=p.end))
    return out
