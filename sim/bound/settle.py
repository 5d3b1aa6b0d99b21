"""Where a timing-dependent (greedy) order settles: its cycle of emits at mean costs.

The analytic model of a greedy phase_pp (:mod:`pipefill.sim.policies.phase_pp_bound`) only bounds
the period from below, because no single order holds for every timing. For the costs the
bound is priced with (the means) the order *is* determined, so :func:`settle` runs the
policy's own programs on the SimPy engine at those costs and reads the steady state off
the emits: the smallest ``c`` such that every emit comes ``span`` ms after the one ``c``
earlier over the last stretch before the drain. ``span / c`` is then the period of that
regime, exactly what the simulated mean period over whole cycles gives (e.g. emits in
pairs every 30 ms: 15 ms, where the lower bound of any order says 10 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipefill.sim.errors import StallError
from pipefill.sim.scenario.model import Scenario

#: chunks simulated, emits left out at each end, longest cycle looked for
CHUNKS, DRAIN, LEAD_IN, MAX_CYCLE = 240, 40, 80, 12
#: how closely repeated gaps must agree (relative), so float noise is no new regime
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Settled:
    """The regime at mean costs: ``cycle`` emits every ``span_ms``; ``period_ms`` per chunk."""

    cycle: int
    span_ms: float
    period_ms: float

    def describe(self) -> str:
        what = "one emit" if self.cycle == 1 else f"a cycle of {self.cycle} emits"
        return (f"at mean costs the greedy order settles into {what} every "
                f"{self.span_ms:.1f} ms: {self.period_ms:.1f} ms per chunk (simulated)")


def settle(sc: Scenario) -> Settled | None:
    """The settled regime of ``sc`` at its mean costs, or None (no periodic regime found,
    or the run stalls: then the lower bound is all there is to say)."""
    # the source stays as given: a realtime input can be what the order settles on
    run = sc.run.model_copy(update={"chunks": CHUNKS, "warmup": 0, "sessions": 1})
    costs = {p: spec.expected() for p, spec in sc.costs.items()}
    mean_sc = sc.model_copy(update={"run": run, "costs": costs})
    # imported here: the engine brings pandas (trace tables), which `bound` of a
    # fixed-order policy never needs
    from pipefill.sim.engine.core import simulate

    try:
        emits = simulate(mean_sc).marks("emit")
    except StallError:
        return None
    t = np.sort(emits["start_ms"].to_numpy())[LEAD_IN:len(emits) - DRAIN]
    for c in range(1, MAX_CYCLE + 1):
        spans = t[c:] - t[:-c]
        if len(spans) >= 2 * c and np.allclose(spans, spans[0], rtol=TOLERANCE, atol=1e-9):
            return Settled(c, float(spans[0]), float(spans[0]) / c)
    return None
