"""A trace's policy facts for ``check`` and ``explain`` (:class:`PolicyFacts`).

``traces/`` reads traces without the simulator; this module is the sim-level side: it
rebuilds the scenario a trace names (its ``scenario`` table, or for a probe trace the
policy it names with costs fitted from the trace by ``calibrate``) and derives what the
policy implies: its queues and their capacities, the most bytes it can hold in flight
(every queue full of its largest message, sizes from a zero-time recording of its
programs), its levers, and the analytic bound's critical cycle in explain's words.
"""

from __future__ import annotations

from dataclasses import replace

from pipefill.sim.bound.analysis import critical_of
from pipefill.sim.errors import ScenarioError
from pipefill.sim.fit.calibrate import calibrate_trace
from pipefill.sim.program.actions import Put
from pipefill.sim.scenario.load import build_scenario
from pipefill.sim.scenario.model import Scenario
from pipefill.sim.schedule.record import RecordStall, record
from pipefill.traces.check import CheckReport, check_trace
from pipefill.traces.explain import Explanation, explain_trace
from pipefill.traces.facts import CriticalFacts, PolicyFacts, QueueFact, facts_from_meta
from pipefill.traces.schema import Trace, TraceError
from pipefill.traces.verdict import IMBALANCED

#: chunks recorded to find each queue's largest message
SIZE_CHUNKS = 24


def scenario_of(trace: Trace) -> tuple[Scenario | None, str]:
    """The trace's scenario, or None and why; the second value notes where costs came
    from when they were fitted."""
    meta = trace.meta
    raw = meta.get("scenario")
    try:
        if isinstance(raw, dict) and raw.get("policy"):
            return build_scenario(raw, name=str(meta.get("scenario_name", "trace"))), ""
        pol = meta.get("policy")
        if isinstance(pol, dict) and pol.get("name"):
            cal = calibrate_trace(trace)
            return cal.scenario, "bound from costs fitted to the trace (calibrate)"
    except (ScenarioError, TraceError, ValueError) as exc:
        return None, f"the trace's policy cannot be rebuilt ({exc})"
    return None, "the trace names no policy"


def bytes_bound(sc: Scenario) -> float:
    """Every queue holding its capacity of its largest message (a sound upper bound)."""
    run = sc.run.model_copy(update={"chunks": min(sc.run.chunks, SIZE_CHUNKS)})
    short = sc.model_copy(update={"run": run, "policy": sc.policy.steady()})
    largest: dict[str, int] = {}
    for step in record(short).steps:
        if isinstance(step.action, Put):
            q, n = step.action.queue, step.action.message.nbytes
            largest[q] = max(largest.get(q, 0), n)
    return float(sum(q.capacity * largest.get(q.name, 0) for q in sc.policy.queues(sc)))


def critical_facts(sc: Scenario) -> CriticalFacts:
    """The bound's critical cycle in explain's words (sim/bound/words.py)."""
    period, crit, busy = critical_of(sc)
    on = [s for s in crit.stages if s in busy] or list(busy)
    bottleneck = max(on, key=lambda s: busy[s]) if on else ""
    category = crit.category or "dependency"
    if category == "stage imbalance" and all(ms >= (1 - IMBALANCED) * period
                                             for ms in busy.values()):
        category = "filled"
    what = {"backpressure": f"backpressure: {crit.queue}'s {crit.slots} slot(s) close the loop",
            "stage imbalance": f"stage imbalance: {bottleneck} busy back to back",
            "filled": "filled: every stage busy"}.get(category, category)
    return CriticalFacts(period, crit.chain, category, tuple(crit.stages), bottleneck,
                         f"{what} ({crit.chain}), {period:.1f} ms per chunk")


def facts_of(trace: Trace) -> PolicyFacts:
    """Everything the trace's policy tells (module docstring); what cannot be derived is
    left empty and said in ``notes``."""
    base = facts_from_meta(trace.meta)
    sc, how = scenario_of(trace)
    if sc is None:
        return replace(base, notes=(how,) if base.policy else ())
    notes = [how] if how else []
    queues = tuple(QueueFact(q.name, q.capacity, q.src, q.dst) for q in sc.policy.queues(sc))
    declared = isinstance(trace.meta.get("scenario"), dict) or "transport" in trace.meta
    nbytes, reason = None, "the trace gives no message sizes (meta.transport)"
    if declared:
        try:
            nbytes = bytes_bound(sc)
        except RecordStall as exc:
            reason = f"the policy's programs do not finish at zero time ({exc})"
    try:
        critical: CriticalFacts | None = critical_facts(sc)
    except ScenarioError as exc:
        critical = None
        notes.append(f"no bound to cross-check: {exc}")
    return replace(base, policy=sc.policy.name, queues=queues, bytes_bound=nbytes,
                   bytes_reason=reason, levers=sc.policy.levers(sc), critical=critical,
                   notes=tuple(notes))


def check(trace: Trace, label: str = "trace") -> CheckReport:
    """``pipefill check`` of one trace: every protocol rule, with the policy's facts."""
    return check_trace(trace, facts_of(trace), label)


def explain(trace: Trace, warmup: int | None = None, label: str = "trace") -> Explanation:
    """``pipefill explain`` of one trace: idle time by cause, chains, the verdict
    cross-checked with the bound when the trace names its policy."""
    return explain_trace(trace, facts_of(trace), warmup, label)
