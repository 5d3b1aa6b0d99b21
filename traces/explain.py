"""Why doesn't it fill: every idle millisecond of every stage, attributed to a cause.

:func:`explain_trace` takes the steady-state window of the metrics (the first session's
emits after the warm-up), cuts each stage's idle time in it into causes
(:mod:`pipefill.traces.idle`: exact from the ``wait`` lane, else inferred) that sum to
it, follows each ``starved`` part to the stage upstream (what it was doing meanwhile:
busy with which phases, or itself waiting on what) and ends in one verdict
(:mod:`pipefill.traces.verdict`). The result is an :class:`Explanation`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipefill.traces.chain import Chain, follow, late_wakeups, upstream_of
from pipefill.traces.facts import PolicyFacts
from pipefill.traces.idle import Evidence, Piece, busy_intervals, stage_pieces, wait_rows
from pipefill.traces.metrics import compute_metrics, warmup_of
from pipefill.traces.schema import Trace, TraceError
from pipefill.traces.verdict import Verdict, decide
from pipefill.traces.waits import CAUSES, Cause


@dataclass(frozen=True)
class Part:
    """One cause of a stage's idle time: ``ms`` of it (``share`` of the stage's idle),
    ``inferred_ms`` of those not from recorded waits; ``chain``: for ``starved``, what
    the stage upstream did meanwhile."""

    cause: str
    target: str
    ms: float
    share: float
    inferred_ms: float
    text: str
    chain: Chain | None = None

    def to_json(self) -> dict[str, Any]:
        return {"cause": self.cause, "target": self.target, "ms": self.ms,
                "share": self.share, "inferred_ms": self.inferred_ms, "text": self.text,
                "chain": None if self.chain is None else self.chain.to_json()}


@dataclass(frozen=True)
class StageIdle:
    """One stage in the window: busy and idle ms, the idle by cause (every key of
    :data:`CAUSES`, summing to ``idle_ms``) and its parts, largest first."""

    stage: str
    window_ms: float
    busy_ms: float
    idle_ms: float
    causes: dict[str, float]
    parts: tuple[Part, ...]
    inferred_ms: float
    waits: bool

    @property
    def idle_share(self) -> float:
        return self.idle_ms / self.window_ms if self.window_ms > 0 else 0.0

    def line(self) -> str:
        """``stage1 idle 39%: starved on q_in (97%) <- stage0 busy ...``"""
        if self.idle_ms <= 0:
            return f"{self.stage} idle 0%"
        top = [p for p in self.parts if p.share >= 0.05] or list(self.parts[:1])
        bits = []
        for p in top:
            chain = f" {p.chain.text()}" if p.chain is not None else ""
            bits.append(f"{p.text} {p.share:.0%}{chain}")
        return f"{self.stage} idle {self.idle_share:.0%}: " + "; ".join(bits)

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "window_ms": self.window_ms, "busy_ms": self.busy_ms,
                "idle_ms": self.idle_ms, "idle_share": self.idle_share,
                "causes": self.causes, "inferred_ms": self.inferred_ms,
                "waits_recorded": self.waits, "line": self.line(),
                "parts": [p.to_json() for p in self.parts]}


@dataclass(frozen=True)
class Explanation:
    """Every stage's idle time by cause over the steady window, and the verdict."""

    label: str
    source: str
    window: dict[str, Any]
    stages: tuple[StageIdle, ...]
    verdict: Verdict
    inferred_share: float
    notes: tuple[str, ...] = ()

    def stage(self, name: str) -> StageIdle:
        return next(s for s in self.stages if s.stage == name)

    def to_json(self) -> dict[str, Any]:
        return {"trace": self.label, "source": self.source, "window": self.window,
                "verdict": self.verdict.text, "category": self.verdict.category,
                "lever": self.verdict.lever, "bottleneck": self.verdict.bottleneck,
                "bound": self.verdict.to_json()["bound"],
                "inferred_share": self.inferred_share,
                "stages": [s.to_json() for s in self.stages], "notes": list(self.notes)}


def _window(trace: Trace, warmup: int | None) -> tuple[float, float, dict[str, Any]]:
    em = trace.marks("emit")
    if not len(em):
        raise TraceError("emit", "the trace has no emit marks: explain needs a steady "
                         "window between emits")
    s0 = int(em["session"].min())
    em = em[em["session"] == s0]
    wu = warmup_of(trace.meta, warmup)
    if wu is not None:
        wu = min(wu, max(len(em) - 2, 0))  # a short trace: as much of it as has two emits
    # the metrics' own window: after the warm-up, before the cool-down (the drain)
    win = dict(compute_metrics(trace, "auto" if wu is None else wu)["window"])
    if not win.get("periods") or win["t_end_ms"] <= win["t_start_ms"]:
        raise TraceError("emit", f"no steady window: {len(em)} emit(s) of session {s0}, "
                         "explain needs two at different times")
    return float(win["t_start_ms"]), float(win["t_end_ms"]), win


def _stages(trace: Trace) -> list[str]:
    sp = trace.spans
    stages = sorted({str(s) for s in sp.loc[sp["lane"] == "compute", "stage"]})
    if len(stages) < 2:
        raise TraceError("stage", f"explain needs two or more stages with compute spans, the "
                         f"trace has {len(stages)} ({', '.join(stages) or 'none'})")
    return stages


def _parts(pieces: list[Piece], idle: float, chains: dict[tuple[str, str], Chain | None]
           ) -> tuple[dict[str, float], tuple[Part, ...], float]:
    by_cause = dict.fromkeys(CAUSES, 0.0)
    groups: dict[tuple[str, str], list[Piece]] = defaultdict(list)
    for p in pieces:
        by_cause[p.cause.cause] += p.ms
        groups[(p.cause.cause, p.cause.target)].append(p)
    parts = []
    for (cause, target), ps in groups.items():
        ms = sum(p.ms for p in ps)
        inferred = sum(p.ms for p in ps if p.inferred)
        parts.append(Part(cause, target, ms, ms / idle if idle > 0 else 0.0, inferred,
                          Cause(cause, target).describe(), chains.get((cause, target))))
    parts.sort(key=lambda p: -p.ms)
    return by_cause, tuple(parts), sum(p.ms for p in pieces if p.inferred)


def explain_trace(trace: Trace, facts: PolicyFacts | None = None, warmup: int | None = None,
                  label: str = "trace") -> Explanation:
    """Attribute every stage's idle time in the steady window (module docstring)."""
    facts = facts if facts is not None else PolicyFacts()
    stages = _stages(trace)
    t0, t1, window = _window(trace, warmup)
    run = trace.meta.get("run")
    ev = Evidence(trace.events, facts, isinstance(run, dict) and run.get("source") == "realtime")
    waits = wait_rows(trace.events)
    pieces = late_wakeups({s: stage_pieces(ev, waits, s, (t0, t1)) for s in stages}, facts,
                          stages)
    span = t1 - t0
    out = []
    for s in stages:
        comp = ev.compute.get(s)
        busy_iv = busy_intervals(comp, s) if comp is not None else np.empty((0, 2))
        clipped = np.clip(busy_iv, t0, t1)
        busy = float((clipped[:, 1] - clipped[:, 0]).sum()) if len(busy_iv) else 0.0
        idle = span - busy
        chains = {(p.cause.cause, p.cause.target): follow(ev, pieces, s, p.cause, stages)
                  for p in pieces[s] if p.cause.cause == "starved"
                  and upstream_of(ev.facts, s, p.cause, stages) is not None}
        by_cause, parts, inferred = _parts(pieces[s], idle, chains)
        out.append(StageIdle(s, span, busy, idle, by_cause, parts, inferred,
                             bool((waits["stage"] == s).any())))
    total_idle = sum(x.idle_ms for x in out)
    inferred_share = sum(x.inferred_ms for x in out) / total_idle if total_idle > 0 else 0.0
    notes = list(facts.notes)
    if inferred_share > 0:
        notes.append(f"{inferred_share:.0%} of the idle time is inferred from spans, marks "
                     "and counters (no wait lane on "
                     + ", ".join(x.stage for x in out if not x.waits) + ")")
    verdict = decide(tuple(out), facts, ev)
    return Explanation(label, trace.source, window, tuple(out), verdict, inferred_share,
                       tuple(notes))

