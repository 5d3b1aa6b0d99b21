"""The analytic period bound: max cycle ratio of a policy's event graph, and what moves it.

``compute_bound(scenario)`` takes the event graph *derived from the policy's own programs*
(``pipefill.sim.bound.derived``: recorded at zero time, the rules of DESIGN.md), prices it
with the *expected* costs, solves it (``pipefill.sim.bound.maxplus``) and reports the
steady-state period per chunk, the critical cycle, the serial upper bound and the
sensitivity of the period to each phase on the critical cycle.

What the number means (``kind``):
- ``exact``: every stage runs a fixed order (``Policy.order``), so for deterministic
  costs the simulated steady state equals it (mean period over whole regime cycles, to
  1e-9 relative).
- ``lower_bound``: a greedy choice whose order depends on timing (phase_pp outside the
  configurations ``fixed_lead`` proves fixed) has no single recorded order; its explicit
  lower-bound model (``pipefill.sim.bound.greedy``) keeps the orders that always hold plus
  each stage's total load; the simulated period is >= it.
- ``estimate``: a dynamic choice (a batching window) is replaced by its fixed-order form.
For stochastic costs the graph is priced with the means (``from_means``), which in
general underestimates the mean period: waits take the max of random durations.
Drift is ignored (no steady state); per-chunk patterns are unrolled exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from pipefill.sim.bound import words
from pipefill.sim.bound.contention import with_contention
from pipefill.sim.bound.derived import priced_graph, table_for
from pipefill.sim.bound.greedy import (
    GraphContext,
    Kind,
    Load,
    ModelGraph,
    greedy_phase_pp,
    greedy_unroll,
)
from pipefill.sim.bound.maxplus import Cycle, DeadlockCycle, PeriodicGraph, Solution, solve
from pipefill.sim.bound.settle import Settled, settle
from pipefill.sim.scenario.costs import CostSpec, CostTable
from pipefill.sim.scenario.load import ScenarioError
from pipefill.sim.scenario.model import Scenario

#: the explicit lower-bound models of timing-dependent (greedy) schedules, by policy
LOWER_BOUNDS = {"phase_pp": (greedy_unroll, greedy_phase_pp)}
#: longest unrolled period (chunks) the greedy model accepts
MAX_UNROLL = 512
#: first chunk of the greedy model's period: past every warm-up lookback
BASE = 512
CUTS_NOTE = "hard cuts are transients: the bound is the steady state within an epoch"


@dataclass(frozen=True)
class Form:
    """What the bound models: ``sc`` (steady, fixed-order form), the kind of the result."""

    sc: Scenario
    kind: Kind
    reason: str
    notes: tuple[str, ...]


def bound_form(sc: Scenario) -> Form:
    """A fixed-order schedule is derived exactly; a timing-dependent choice is replaced
    by its fixed form (an estimate) or by the policy's explicit lower-bound model."""
    pol = sc.policy.steady()
    notes = () if pol == sc.policy else (CUTS_NOTE,)
    steady = sc.model_copy(update={"policy": pol})
    order = pol.order(steady)
    if order.fixed:
        return Form(steady, "exact", order.reason, notes)
    fixed = pol.fixed_form()
    if fixed is not None:
        return Form(sc.model_copy(update={"policy": fixed}), "estimate",
                    f"{order.reason}; the bound prices its fixed-order form", notes)
    if pol.name in LOWER_BOUNDS:
        return Form(steady, "lower_bound", order.reason, notes)
    raise ScenarioError("policy", f"no bound for {pol.name}: {order.reason}")


def graph_of(sc: Scenario, costs: dict[str, CostSpec] | None = None) -> ModelGraph:
    """The event graph of ``sc`` priced with ``costs`` (default: the expected costs)."""
    form = bound_form(sc)
    if form.kind == "lower_bound":
        return _lower_bound(form, costs)
    g, u = priced_graph(form.sc, table_for(form.sc, costs))
    return ModelGraph(g, u, form.kind, form.reason, notes=list(form.notes))


def _lower_bound(form: Form, costs: dict[str, CostSpec] | None) -> ModelGraph:
    sc = form.sc
    unroll, build = LOWER_BOUNDS[sc.policy.name]
    u = unroll(sc.policy)
    for spec in sc.costs.values():
        if spec.pattern:
            u = u * len(spec.pattern) // math.gcd(u, len(spec.pattern))
    if u > MAX_UNROLL:
        raise ScenarioError("costs", f"the schedule repeats only every {u} chunks "
                            f"(bound handles up to {MAX_UNROLL}); shorten the patterns")
    base = u * math.ceil(BASE / u)
    specs = costs if costs is not None else {p: s.expected() for p, s in sc.costs.items()}
    table = CostTable(specs, sc.run.sessions, base + 2 * u, seed=0)
    mg = build(sc.policy, GraphContext(sc, table, u, base), form.reason)
    mg.notes.extend(form.notes)
    return mg


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


@dataclass(frozen=True)
class _Solved:
    model: ModelGraph
    solution: Solution
    critical: Critical
    period: float


def _solve(sc: Scenario, costs: dict[str, CostSpec] | None = None) -> _Solved:
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
    return _Solved(mg, sol, crit, crit.per_chunk_ms)


def format_chain(g: PeriodicGraph, cycle: Cycle) -> str:
    """``decode[k] -> build[k+1] -> ...``: zero-length steps left out but a queue slot's
    wait (``(q_out slot)``: the arc is that slot, not a dependency), repeats merged,
    starting from the earliest instance (ties: the family declared first)."""
    shown = words.binding(g, cycle)
    steps = [s for i, s in enumerate(cycle.steps)
             if s.duration > 0 or (i in shown and words.is_slot(g.families[s.family]))] \
        or list(cycle.steps)
    order = {name: i for i, name in enumerate(g.families)}
    work = [i for i, s in enumerate(steps) if not words.is_slot(g.families[s.family])]
    start = min(work or range(len(steps)),
                key=lambda i: (steps[i].index, order[steps[i].family], i))
    # the steps before the new start come round again one cycle (lag periods) later
    later = [replace(s, index=s.index + cycle.lag * g.families[s.family].mult)
             for s in steps[:start]]
    steps = steps[start:] + later
    first = steps[0]
    fam = g.families[first.family]
    closing = (first.family, first.index + cycle.lag * fam.mult)
    names: list[str] = []
    origin: dict[str, int] = {}
    for family, index in [*((s.family, s.index) for s in steps), closing]:
        f = g.families[family]
        if words.is_slot(f):
            names.append(words.slot_name(f))
            continue
        base = origin.setdefault(f.index, index)
        off = index - base
        names.append(f"{f.label}[{f.index}{f'+{off}' if off > 0 else (off or '')}]")
    return " -> ".join([*_merge_runs(names[:-1]), names[-1]])


def _merge_runs(names: list[str]) -> list[str]:
    """``denoise[k] x2`` for repeats; ``layers@stage0[k..k+7]`` for consecutive instances."""
    out: list[tuple[str, str, str, int]] = []  # label, first index, last index, repeats
    for name in names:
        if "[" not in name:  # a queue slot: no instance index
            out.append((name, "", "", 0))
            continue
        label, idx = name[:-1].split("[")
        if out and out[-1][0] == label and out[-1][2] == idx:
            out[-1] = (label, out[-1][1], idx, out[-1][3] + 1)
        elif out and out[-1][0] == label and out[-1][3] == 1 and _next(out[-1][2]) == idx:
            out[-1] = (label, out[-1][1], idx, 1)
        else:
            out.append((label, idx, idx, 1))
    return [lab if not n else f"{lab}[{a}]" + (f" x{n}" if n > 1 else "") if a == b
            else f"{lab}[{a}..{b}]" for lab, a, b, n in out]


def _next(idx: str) -> str:
    """The index after ``k+2`` (``k+3``), ``k`` (``k+1``) or ``k-1`` (``k``)."""
    letter, off = idx[0], int(idx[1:] or 0) + 1
    return f"{letter}+{off}" if off > 0 else (f"{letter}{off}" if off else letter)


def _stages(g: PeriodicGraph, cycle: Cycle) -> tuple[str, ...]:
    seen: list[str] = []
    for s in cycle.steps:
        fam = g.families[s.family]
        if s.duration > 0 and fam.phase is not None and fam.stage not in seen:
            seen.append(fam.stage)
    return tuple(seen)


def _shifted(sc: Scenario, phase: str, cost: float) -> dict[str, CostSpec]:
    """Expected costs with ``phase``'s one-item mean set to ``cost`` ms."""
    specs = {p: s.expected() for p, s in sc.costs.items()}
    spec = specs[phase]
    fixed = min(spec.batch_fixed_ms, cost)
    specs[phase] = spec.model_copy(update={"mean": cost, "batch_fixed_ms": fixed})
    return specs


def _weight(sc: Scenario, solved: _Solved, costs: dict[str, CostSpec]) -> float:
    """The critical constraint's ms per chunk under other prices."""
    mg = graph_of(sc, costs)
    crit = solved.critical
    if crit.cycle is not None:
        return mg.graph.cycle_weight(crit.cycle) / crit.cycle.lag / mg.chunks_per_period
    assert crit.load is not None
    load = next(ld for ld in mg.loads if ld.stage == crit.load.stage)
    return load.ms / mg.chunks_per_period


def sensitivity(sc: Scenario, solved: _Solved) -> dict[str, float]:
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
        s_lo = _solve(sc, _shifted(sc, phase, lo))
        line_lo = period - slope * (hi - lo)
        if s_lo.period <= line_lo + 1e-9 * max(1.0, period):
            return {"cost_ms": lo, "period_ms": s_lo.period}
        slope_lo = _weight(sc, s_lo, _shifted(sc, phase, lo + 1.0)) - s_lo.period
        if slope - slope_lo <= 1e-12:
            break
        lo = (s_lo.period - slope_lo * lo - period + slope * hi) / (slope - slope_lo)
    return {"cost_ms": lo, "period_ms": _solve(sc, _shifted(sc, phase, lo)).period}


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
    solved = _solve(sc)
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
    solved = _solve(sc)
    cyc = solved.model.chunks_per_period
    if solved.critical.cycle is not None:
        cyc *= solved.solution.cyclicity()
    if sc.has_shared_device:  # contention: the full range needs compute_bound
        return PeriodBound(compute_bound(sc).period_ms, "lower_bound", cyc,
                           solved.critical.chain)
    return PeriodBound(solved.period, solved.model.kind, cyc, solved.critical.chain)


def compute_bound(sc: Scenario) -> Bound:
    """The analytic steady-state period of ``sc``'s policy and what sets it."""
    solved = _solve(sc)
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
    result = with_contention(result, sc, mg, lambda costs: _solve(sc, costs).period)
    if mg.kind == "lower_bound" and not sc.has_shared_device:
        result.settled = settle(sc)
    result.explanation = explain(result)
    return result


def explain(b: Bound) -> str:
    """One line a user can act on: what sets the period, the slack elsewhere, the lever."""
    what = {"exact": "", "lower_bound": "at least ", "estimate": "about "}[b.kind]
    means = ", from mean costs" if b.from_means else ""
    crit = b.critical
    head = f"period {what}{b.period_ms:.1f} ms ({b.fps or 0:.1f} fps{means})"
    if crit.one_stage_busy:
        why = f"is set by {crit.stages[0]}, busy back to back ({crit.chain})"
    else:
        why = words.why(crit.category, crit.queue, crit.slots, crit.lag_chunks, crit.stages,
                        crit.chain)
    idle = [f"{s} {1 - ms / b.period_ms:.0%} idle" for s, ms in b.busy_ms.items()
            if s not in crit.stages and b.period_ms > 0]
    slack = f"; {', '.join(idle)}" if idle else ""
    if b.settled is not None:
        # the user's question is the period they will get: say it first
        return (f"{b.settled.describe()[0].upper()}{b.settled.describe()[1:]}; "
                f"no order of this policy beats {b.period_ms:.1f} ms, which {why}{slack}.")
    if not b.sensitivity:
        return f"{head} {why}{slack}."
    phase, slope = next(iter(b.sensitivity.items()))
    lim = b.limits.get(phase)
    until = (f" until {phase} is {lim['cost_ms']:.1f} ms (period {lim['period_ms']:.1f} ms)"
             if lim else "")
    return (f"{head} {why}{slack}. Cut {phase}: each ms saves {slope:.2g} ms of period"
            f"{until}.")
