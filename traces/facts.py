"""What a trace's policy says, as plain data: the input of ``check`` and ``explain``.

``traces/`` imports no simulator, so the facts a protocol check or an idle attribution
needs from the policy (queue capacities, the bytes-in-flight bound, the levers and
the bound's critical cycle) come either from the trace's own metadata (simulated and
replayed traces carry their ``queues``) or from the caller: a sim-level helper
(:mod:`pipefill.sim.trace_facts`) builds them from the policy a trace names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QueueFact:
    """A bounded queue: ``name`` (the trace's counter name), ``capacity`` (slots),
    ``src`` (the stage that fills it) and ``dst`` (the stage that takes from it)."""

    name: str
    capacity: int
    src: str
    dst: str


@dataclass(frozen=True)
class CriticalFacts:
    """The analytic bound's view of a run: ``period_ms``, its critical ``chain``,
    ``category`` (the cause in explain's words: backpressure, dependency, source-bound,
    fill/drain bubbles, stage imbalance), ``stages`` on the cycle and ``bottleneck``
    (the stage of the cycle with the most work per chunk)."""

    period_ms: float
    chain: str
    category: str
    stages: tuple[str, ...]
    bottleneck: str
    text: str = ""


@dataclass(frozen=True)
class PolicyFacts:
    """Facts of the policy a trace was run with; every field may be missing.

    ``policy``: its name ("" when the trace names none). ``queues``: its bounded queues
    (empty: capacities unknown). ``bytes_bound``: the most bytes it can hold in flight
    (None: unknown, ``bytes_reason`` says why). ``levers``: the policy's words for
    what would move a cause, keyed ``category`` or ``category:queue`` (e.g.
    ``backpressure:q_out`` -> ``D_out = 2``). ``critical``: the bound's critical
    cycle. ``run_end_ms``: when the run ended, if the trace records it
    (``meta.run_end_ms``). ``notes``: what the caller could not establish.
    """

    policy: str = ""
    queues: tuple[QueueFact, ...] = ()
    bytes_bound: float | None = None
    bytes_reason: str = "the trace names no policy"
    levers: Mapping[str, str] = field(default_factory=dict)
    critical: CriticalFacts | None = None
    run_end_ms: float | None = None
    notes: tuple[str, ...] = ()

    def queue(self, name: str) -> QueueFact | None:
        return next((q for q in self.queues if q.name == name), None)


def queues_from_meta(meta: Mapping[str, Any]) -> tuple[QueueFact, ...]:
    """The queues a simulated or replayed trace carries in its metadata (``queues``)."""
    raw = meta.get("queues")
    if not isinstance(raw, list):
        return ()
    out = []
    for q in raw:
        if isinstance(q, dict) and {"name", "capacity", "src", "dst"} <= set(q):
            out.append(QueueFact(str(q["name"]), int(q["capacity"]), str(q["src"]),
                                 str(q["dst"])))
    return tuple(out)


def facts_from_meta(meta: Mapping[str, Any]) -> PolicyFacts:
    """What the metadata alone tells (no simulator): the policy's name and its queues."""
    pol = meta.get("policy")
    name = str(pol.get("name", "")) if isinstance(pol, dict) else ""
    end = meta.get("run_end_ms")
    return PolicyFacts(policy=name, queues=queues_from_meta(meta),
                       run_end_ms=float(end) if isinstance(end, int | float) else None,
                       bytes_reason="needs the policy's message sizes (pipefill check "
                       "computes them from the policy the trace names)" if name else
                       "the trace names no policy")
