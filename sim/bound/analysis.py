"""The analytic period bound: max cycle ratio of a policy's event graph, and what moves it.

``compute_bound(scenario)`` takes the event graph *derived from the policy's own programs*
(``pipefill.sim.bound.derived``: recorded at zero time, the rules of DESIGN.md), prices it
with the *expected* costs, solves it (``pipefill.sim.graph.maxplus``) and reports the
steady-state period per chunk, the critical cycle, the serial upper bound and the
sensitivity of the period to each phase on the critical cycle.

What the number means (``kind``):
- ``exact``: every stage runs a fixed order (``Policy.order``), so for deterministic
  costs the simulated steady state equals it (mean period over whole regime cycles, to
  1e-9 relative).
- ``lower_bound``: a greedy choice whose order depends on timing (phase_pp outside the
  configurations ``fixed_lead`` proves fixed) has no single recorded order; its explicit
  lower-bound model (``Policy.lower_bound``) keeps the orders that always hold plus
  each stage's total load; the simulated period is >= it.
- ``estimate``: a dynamic choice (a batching window) is replaced by its fixed-order form.
For stochastic costs the graph is priced with the means (``from_means``), which in
general underestimates the mean period: waits take the max of random durations.
Drift is ignored (no steady state); per-chunk patterns are unrolled exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipefill.sim.bound.contention import with_contention
from pipefill.sim.bound.explain import explain
from pipefill.sim.bound.sensitivity import limit, sensitivity
from pipefill.sim.bound.settle import Settled, settle
from pipefill.sim.bound.solve import Critical, solve_scenario
from pipefill.sim.graph.model import ModelGraph
from pipefill.sim.scenario.model import Scenario


@dataclass
class Bound:
    """Result of :func:`compute_bound`; ``to_json`` has the documented keys."""

    period_ms: float
    fps: float | None
    kind: str
    reason: str
    from_means: bool
    critical: Critical
    serial_ms: float
    busy_ms: dict[str, float]
    sensitivity: dict[str, float]
    limits: dict[str, dict[str, float]]
    cyclicity: int
    notes: list[str] = field(default_factory=list)
    explanation: str = ""
    #: stages sharing a device: lower/upper bounds (sim/bound/contention.py), else None
    contention: dict[str, Any] | None = None
    #: a greedy order's steady state at mean costs (sim/bound/settle.py), else None
    settled: Settled | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "period_ms": self.period_ms, "fps": self.fps, "kind": self.kind,
            "reason": self.reason, "from_means": self.from_means,
            "critical_cycle": self.critical.chain,
            "critical_lag_chunks": self.critical.lag_chunks,
            "critical_stages": list(self.critical.stages),
            "serial_ms": self.serial_ms, "busy_ms": self.busy_ms,
            "sensitivity": self.sensitivity, "limits": self.limits,
            "cyclicity_chunks": self.cyclicity, "notes": self.notes,
            "explanation": self.explanation, "contention": self.contention,
            "settled": None if self.settled is None else {
                "period_ms": self.settled.period_ms, "cycle_emits": self.settled.cycle,
                "span_ms": self.settled.span_ms},
        }


def _busy(mg: ModelGraph) -> dict[str, float]:
    busy: dict[str, float] = {}
    for (family, _), d in mg.graph.durations.items():
        fam = mg.graph.families[family]
        if fam.phase is not None and fam.work:
            busy[fam.stage] = busy.get(fam.stage, 0.0) + d / mg.chunks_per_period
    return dict(sorted(busy.items()))


def critical_of(sc: Scenario) -> tuple[float, Critical, dict[str, float]]:
    """The period, its critical constraint and each stage's work per chunk, without the
    sensitivity analysis (what ``explain`` cross-checks a trace against)."""
    solved = solve_scenario(sc)
    return solved.period, solved.critical, _busy(solved.model)


@dataclass(frozen=True)
class PeriodBound:
    """The period alone (what tests compare SimPy against): ms per chunk, what kind of
    bound it is, the chunks after which the steady regime repeats, the critical chain."""

    period_ms: float
    kind: str
    cyclicity: int
    chain: str


def period_bound(sc: Scenario) -> PeriodBound:
    """Just the period, without the sensitivity analysis of :func:`compute_bound`."""
    solved = solve_scenario(sc)
    cyc = solved.model.chunks_per_period
    if solved.critical.cycle is not None:
        cyc *= solved.solution.cyclicity()
    if sc.has_shared_device:  # contention: the full range needs compute_bound
        return PeriodBound(compute_bound(sc).period_ms, "lower_bound", cyc,
                           solved.critical.chain)
    return PeriodBound(solved.period, solved.model.kind, cyc, solved.critical.chain)


def compute_bound(sc: Scenario) -> Bound:
    """The analytic steady-state period of ``sc``'s policy and what sets it."""
    solved = solve_scenario(sc)
    mg = solved.model
    sens = sensitivity(sc, solved)
    limits = {p: limit(sc, p, s, solved.period) for p, s in sens.items() if s > 0}

    def lever(item: tuple[str, float]) -> tuple[float, float]:
        """Steepest first, then the one that pays off longest."""
        phase, slope = item
        gain = solved.period - limits[phase]["period_ms"] if phase in limits else 0.0
        return (-slope, -gain)

    sens = dict(sorted(sens.items(), key=lever))
    notes = list(mg.notes)
    if any(spec.drift_ms for spec in sc.costs.values()):
        notes.append("drift_ms is ignored: a drifting cost has no steady state")
    period = solved.period
    fps = sc.run.frames_per_chunk * 1000.0 / period if period > 0 else None
    cyclicity = mg.chunks_per_period
    if solved.critical.cycle is not None:
        cyclicity *= solved.solution.cyclicity()
    result = Bound(period, fps, mg.kind, mg.reason, not sc.deterministic, solved.critical,
                   mg.graph.work_per_period() / mg.chunks_per_period, _busy(mg), sens,
                   limits, cyclicity, notes)
    result = with_contention(result, sc, mg, lambda costs: solve_scenario(sc, costs).period)
    if mg.kind == "lower_bound" and not sc.has_shared_device:
        result.settled = settle(sc)
    result.explanation = explain(result)
    return result
