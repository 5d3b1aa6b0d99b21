"""What a study knows about each point beyond its sweep metrics: the analytic bound and
its critical cycle (the "why" of a verdict), the devices it uses, its utilisation and
whether every queue stayed within its capacity.

Every study point gets the columns of :data:`FACTS`; a study file may read them like
any metric (``fps_per_gpu = "aggregate_fps / devices"``).
"""

from __future__ import annotations

from typing import Any

from pipefill.sim.bound.analysis import critical_of, period_bound
from pipefill.sim.bound.solve import Solved, solve_scenario
from pipefill.sim.errors import ScenarioError, StallError
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.study.show import number

#: fact column -> what it is (documented in the README's study section)
FACTS: dict[str, str] = {
    "bound_ms": "the analytic period (bound's maximum cycle mean, from mean costs)",
    "bound_kind": "exact, lower_bound or estimate",
    "critical_cycle": "the chain of phases that sets the bound",
    "critical_stages": "the stages on that chain",
    "limit": "what closes that chain, in explain's words: stage imbalance, backpressure, "
             "dependency, fill/drain bubbles or source-bound",
    "limit_queue": "the queue whose slots close it (backpressure, fill/drain)",
    "limit_slots": "that queue's slots",
    "busiest": "the stage with the most work per chunk",
    "loop_phases": "phases of the other stages that the critical cycle holds",
    "devices": "devices the point's stages run on (a stage not placed has its own)",
    "utilisation": "1 - the mean bubble of the point's stages over the steady window",
    "queues_held": "1 when no queue ever held more than its capacity, else 0",
    "queue_slots": "the capacities of all the point's queues, summed",
}


def point_facts(sc: Scenario, row: dict[str, Any]) -> dict[str, Any]:
    """The :data:`FACTS` of one point from its scenario and its sweep row."""
    stages = sc.stage_names
    out: dict[str, Any] = {"devices": len(sc.placement.groups(stages))}
    bubbles = [number(row.get(f"bubble_{s}")) for s in stages]
    out["utilisation"] = (1.0 - sum(bubbles) / len(bubbles)  # type: ignore[arg-type]
                          if bubbles and all(b is not None for b in bubbles) else None)
    queues = sc.policy.queues(sc)
    out["queue_slots"] = sum(q.capacity for q in queues)
    peaks = [number(row.get(f"{q.name}_max")) for q in queues]
    out["queues_held"] = (None if not queues or any(p is None for p in peaks) else
                          float(all(p <= q.capacity for p, q in zip(peaks, queues, strict=True)
                                    if p is not None)))
    return {**out, **bound_facts(sc)}


BOUND_FACTS = ("bound_ms", "bound_kind", "critical_cycle", "critical_stages", "limit",
               "limit_queue", "limit_slots", "busiest", "loop_phases")


def bound_facts(sc: Scenario) -> dict[str, Any]:
    """The bound's period, kind and critical cycle in ``explain``'s words (empty cells
    when it has none)."""
    try:
        solved = solve_scenario(sc)
        _, crit, busy = critical_of(sc)
    except (ScenarioError, StallError, ValueError) as exc:
        return dict.fromkeys(BOUND_FACTS) | {"bound_error": str(exc)}
    # contention: the period is a range that only compute_bound works out
    period = period_bound(sc).period_ms if sc.has_shared_device else solved.period
    busiest = max(busy, key=lambda s: busy[s]) if busy else None
    return {"bound_ms": period, "bound_kind": solved.model.kind,
            "critical_cycle": crit.chain, "critical_stages": " ".join(crit.stages),
            "limit": crit.category or None, "limit_queue": crit.queue or None,
            "limit_slots": crit.slots or None, "busiest": busiest,
            "loop_phases": " ".join(_loop_phases(solved, busiest))}


def _loop_phases(solved: Solved, busiest: str | None) -> list[str]:
    """The critical cycle's phases that run on another stage than the busiest one: the
    work the loop serialises into the bottleneck's period."""
    cycle = solved.critical.cycle
    if cycle is None:
        return []
    g = solved.model.graph
    found = [g.families[s.family] for s in cycle.steps if s.duration > 0]
    return list(dict.fromkeys(f.phase for f in found
                              if f.phase is not None and f.work and f.stage != busiest))
