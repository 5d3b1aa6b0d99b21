"""Solving a scenario's model: its maximum cycle ratio, or a stage's load where that is
larger, as the :class:`Critical` constraint that sets the period."""

from __future__ import annotations

from dataclasses import dataclass

from pipefill.sim.bound import words
from pipefill.sim.bound.explain import format_chain
from pipefill.sim.bound.form import graph_of
from pipefill.sim.errors import ScenarioError
from pipefill.sim.graph.maxplus import Solution, solve
from pipefill.sim.graph.model import Load, ModelGraph
from pipefill.sim.graph.periodic import Cycle, DeadlockCycle, PeriodicGraph
from pipefill.sim.scenario.costs import CostSpec
from pipefill.sim.scenario.model import Scenario


@dataclass(frozen=True)
class Critical:
    """What bounds the period: a cycle of the graph, or a stage's total load."""

    chain: str
    per_chunk_ms: float
    lag_chunks: int
    stages: tuple[str, ...]
    cycle: Cycle | None = None
    load: Load | None = None
    one_stage_busy: bool = False  # only one stage's compute, back to back, on the cycle
    #: the cycle in explain's words (sim/bound/words.py) and the queue whose slots close it
    category: str = ""
    queue: str = ""
    slots: int = 0


@dataclass(frozen=True)
class Solved:
    model: ModelGraph
    solution: Solution
    critical: Critical
    period: float


def solve_scenario(sc: Scenario, costs: dict[str, CostSpec] | None = None) -> Solved:
    mg = graph_of(sc, costs)
    try:
        sol = solve(mg.graph)
    except DeadlockCycle as exc:
        raise ScenarioError("policy", f"this configuration deadlocks: {exc}") from None
    u = mg.chunks_per_period
    cyc = words.limiting(mg.graph, sol.cycle)
    stages = _stages(mg.graph, cyc)
    waits = any(s.duration > 0 and mg.graph.families[s.family].phase is None
                for s in cyc.steps)
    busy = len(stages) == 1 and not waits
    cat, queue = words.category(mg.graph, cyc, busy)
    slots = next((q.capacity for q in sc.policy.queues(sc) if q.name == queue), 0)
    crit = Critical(format_chain(mg.graph, cyc), cyc.ratio / u, cyc.lag * u, stages,
                    cycle=cyc, one_stage_busy=busy, category=cat, queue=queue, slots=slots)
    for load in mg.loads:
        if load.ms / u > crit.per_chunk_ms:
            chain = f"{load.stage} busy: " + " + ".join(p for p, n in load.phases.items() if n)
            crit = Critical(chain, load.ms / u, 1, (load.stage,), load=load,
                            one_stage_busy=True, category="stage imbalance")
    return Solved(mg, sol, crit, crit.per_chunk_ms)


def _stages(g: PeriodicGraph, cycle: Cycle) -> tuple[str, ...]:
    seen: list[str] = []
    for s in cycle.steps:
        fam = g.families[s.family]
        if s.duration > 0 and fam.phase is not None and fam.stage not in seen:
            seen.append(fam.stage)
    return tuple(seen)
