"""Which model the bound solves: the graph derived from the programs (``exact``), a
dynamic choice's fixed-order form (``estimate``) or the policy's own lower-bound model
(``lower_bound``, through the ``Policy.lower_bound`` hook), priced with given costs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipefill.sim.bound.derived import priced_graph, table_for, with_patterns
from pipefill.sim.errors import ScenarioError
from pipefill.sim.graph.model import GraphContext, Kind, ModelGraph
from pipefill.sim.scenario.costs import CostSpec, CostTable
from pipefill.sim.scenario.model import Scenario

#: first chunk of a lower-bound model's period: past every warm-up lookback
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
    if pol.lower_bound() is not None:
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
    model = sc.policy.lower_bound()
    assert model is not None  # bound_form chose lower_bound because the hook gave one
    u = with_patterns(sc, model.unroll)
    base = u * math.ceil(BASE / u)
    specs = costs if costs is not None else {p: s.expected() for p, s in sc.costs.items()}
    table = CostTable(specs, sc.run.sessions, base + 2 * u, seed=0)
    mg = model.build(GraphContext(sc, table, u, base, model.stage_of), form.reason)
    mg.notes.extend(form.notes)
    return mg
