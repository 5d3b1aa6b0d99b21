"""What moves the period: its slope in each phase's mean along the critical constraint,
and how far cutting a phase keeps paying off before another constraint takes over."""

from __future__ import annotations

from pipefill.sim.bound.form import graph_of
from pipefill.sim.bound.solve import Solved, solve_scenario
from pipefill.sim.scenario.costs import CostSpec
from pipefill.sim.scenario.model import Scenario


def _shifted(sc: Scenario, phase: str, cost: float) -> dict[str, CostSpec]:
    """Expected costs with ``phase``'s one-item mean set to ``cost`` ms."""
    specs = {p: s.expected() for p, s in sc.costs.items()}
    spec = specs[phase]
    fixed = min(spec.batch_fixed_ms, cost)
    specs[phase] = spec.model_copy(update={"mean": cost, "batch_fixed_ms": fixed})
    return specs


def _weight(sc: Scenario, solved: Solved, costs: dict[str, CostSpec]) -> float:
    """The critical constraint's ms per chunk under other prices."""
    mg = graph_of(sc, costs)
    crit = solved.critical
    if crit.cycle is not None:
        return mg.graph.cycle_weight(crit.cycle) / crit.cycle.lag / mg.chunks_per_period
    assert crit.load is not None
    load = next(ld for ld in mg.loads if ld.stage == crit.load.stage)
    return load.ms / mg.chunks_per_period


def sensitivity(sc: Scenario, solved: Solved) -> dict[str, float]:
    """d(period)/d(phase's one-item mean) for every phase on the critical constraint: ms
    of period per ms of the phase (per denoise *step*: two steps on the cycle give 2).

    Durations are affine in a phase's mean, so one step of 1 ms gives the exact slope
    of the critical cycle (the period's slope while that cycle stays critical).
    """
    out: dict[str, float] = {}
    for phase, spec in sc.costs.items():
        mean = spec.base_mean()
        slope = _weight(sc, solved, _shifted(sc, phase, mean + 1.0)) - solved.period
        if abs(slope) > 1e-12:
            out[phase] = slope
    return out


def limit(sc: Scenario, phase: str, slope: float, period: float) -> dict[str, float]:
    """How far cutting ``phase`` keeps paying off at ``slope``: the cost at which another
    constraint takes over, and the period there (secant steps on the convex period)."""
    hi = sc.costs[phase].base_mean()
    lo = 0.0
    for _ in range(32):
        s_lo = solve_scenario(sc, _shifted(sc, phase, lo))
        line_lo = period - slope * (hi - lo)
        if s_lo.period <= line_lo + 1e-9 * max(1.0, period):
            return {"cost_ms": lo, "period_ms": s_lo.period}
        slope_lo = _weight(sc, s_lo, _shifted(sc, phase, lo + 1.0)) - s_lo.period
        if slope - slope_lo <= 1e-12:
            break
        lo = (s_lo.period - slope_lo * lo - period + slope * hi) / (slope - slope_lo)
    return {"cost_ms": lo, "period_ms": solve_scenario(sc, _shifted(sc, phase, lo)).period}
