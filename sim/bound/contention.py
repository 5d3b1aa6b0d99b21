"""The period bound when stages share a device: a lower and an upper bound.

Computes that overlap on a shared device slow each other (:mod:`pipefill.sim.engine.contention`),
so how long a phase takes depends on what else runs at that moment: the schedule is no
longer a timed event graph with fixed durations and the bound becomes a range.

- lower: the event graph with solo durations (contention only lengthens a compute), and
  every shared device's work per chunk over its best throughput ``max_n n * rate_n``;
- upper: the event graph with every phase that runs on a shared device priced at its
  slowest speed, ``solo / min_n rate_n`` (each compute progresses at least that fast).
  A fixed-order policy's period is monotone in its durations, so this is an upper bound
  of the simulated period; for a greedy policy (bound kind ``lower_bound``) it is an
  estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pipefill.sim.graph.model import ModelGraph
from pipefill.sim.scenario.costs import CostSpec
from pipefill.sim.scenario.model import Scenario


@dataclass(frozen=True)
class ContentionRange:
    """``lower_ms`` <= period <= ``upper_ms`` (per chunk); ``devices``: per shared device,
    its stages, work per chunk, best throughput and slowest rate."""

    lower_ms: float
    upper_ms: float
    upper_is_bound: bool
    devices: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"lower_ms": self.lower_ms, "upper_ms": self.upper_ms,
                "upper_is_bound": self.upper_is_bound, "devices": self.devices}

    def note(self) -> str:
        names = ", ".join(f"{d} ({', '.join(v['stages'])})" for d, v in self.devices.items())
        upper = "at most" if self.upper_is_bound else "about at most"
        return (f"shared device {names}: contention makes the timing decide the order; the "
                f"period is at least {self.lower_ms:.1f} ms and {upper} {self.upper_ms:.1f} ms")


def contention_range(sc: Scenario, mg: ModelGraph, solo_period: float,
                     busy: dict[str, float], exact: bool,
                     solve: Callable[[dict[str, CostSpec]], float]) -> ContentionRange | None:
    """The range for ``sc``, or None when no device is shared.

    ``solo_period``: the graph's period with solo costs; ``busy``: solo busy ms per chunk
    per stage; ``exact``: the graph is fixed-order; ``solve``: the period of the graph
    priced with other costs.
    """
    shared = sc.shared_devices()
    if not shared:
        return None
    lower, devices, slowest = solo_period, {}, {}
    host_gap: dict[str, float] = {}
    calls = _calls(mg)
    for dev, stages in shared.items():
        spec = sc.placement.spec(dev)
        levels = range(1, len(stages) + 1)
        # a dispatch gap is host time, not work on the device, unless the device is the
        # host (a CPU core runs the stage threads' Python too)
        hosted = spec.hosts_dispatch
        work = sum(busy.get(s, 0.0) - (0.0 if hosted else sc.dispatch_ms(s) * calls.get(s, 0.0))
                   for s in stages)
        best = max(spec.throughput_at(n) for n in levels)
        worst = min(spec.rate_at(n) for n in levels)
        lower = max(lower, work / best)
        devices[dev] = {"stages": list(stages), "work_ms": work, "best_throughput": best,
                        "slowest_rate": worst}
        slowest.update(dict.fromkeys(stages, worst))
        if hosted:
            host_gap.update({s: sc.dispatch_ms(s) for s in stages})
    factor: dict[str, float] = {}
    gap: dict[str, float] = {}
    for fam in mg.graph.families.values():
        if fam.phase is not None and fam.stage in slowest:
            factor[fam.phase] = max(factor.get(fam.phase, 1.0), 1.0 / slowest[fam.stage])
            gap[fam.phase] = max(gap.get(fam.phase, 0.0), host_gap.get(fam.stage, 0.0))
    costs = {}
    for phase, cost in sc.costs.items():
        mean, f = cost.expected(), factor.get(phase, 1.0)
        # a call is priced gap + cost: a hosted gap slows down with the compute, so
        # (gap + cost) * f = gap + (cost * f + gap * (f - 1))
        slow = (mean.mean or 0.0) * f + gap.get(phase, 0.0) * (f - 1.0)
        costs[phase] = mean.model_copy(update={"mean": slow})
    upper = max(lower, solve(costs))
    return ContentionRange(lower, upper, exact, devices)


def _calls(mg: ModelGraph) -> dict[str, float]:
    """Compute calls per chunk per stage (each pays its stage's dispatch gap)."""
    calls: dict[str, float] = {}
    for (family, _), d in mg.graph.durations.items():
        fam = mg.graph.families[family]
        if fam.phase is not None and fam.work and d > 0:
            calls[fam.stage] = calls.get(fam.stage, 0.0) + 1.0 / mg.chunks_per_period
    return calls


def with_contention(bound: Any, sc: Scenario, mg: ModelGraph,
                    solve: Callable[[dict[str, CostSpec]], float]) -> Any:
    """``bound`` (a :class:`pipefill.sim.bound.analysis.Bound`) unchanged, or, with a shared
    device, as a range: period = the lower bound, kind ``lower_bound``, ``contention`` set."""
    rng = contention_range(sc, mg, bound.period_ms, bound.busy_ms, bound.kind == "exact",
                           solve)
    if rng is None:
        return bound
    fps = sc.run.frames_per_chunk * 1000.0 / rng.lower_ms if rng.lower_ms > 0 else None
    crit = bound.critical
    dev, info = max(rng.devices.items(), key=lambda kv: kv[1]["work_ms"] / kv[1]["best_throughput"])
    if info["work_ms"] / info["best_throughput"] > bound.period_ms:  # the device binds
        crit = replace(crit, chain=f"device {dev} busy: {' + '.join(info['stages'])} at best "
                       f"throughput {info['best_throughput']:.2f}", per_chunk_ms=rng.lower_ms,
                       lag_chunks=1, stages=(dev,), cycle=None, load=None, one_stage_busy=True)
    return replace(bound, period_ms=rng.lower_ms, fps=fps, kind="lower_bound", critical=crit,
                   contention=rng.to_json(), notes=[*bound.notes, rng.note()])
