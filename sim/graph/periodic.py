"""Periodic timed event graphs: families of activity instances, arcs with lags, cycles.

One *period* of a schedule is unrolled into families of nodes (``mult`` instances per
period); an arc between two instances gets ``lag`` = how many periods apart they are.
:mod:`pipefill.sim.graph.maxplus` solves such a graph for its maximum cycle ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEG = -np.inf


class DeadlockCycle(ValueError):
    """The graph has a cycle without lag: the schedule deadlocks. ``cycle`` names it."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__("cycle without slack: " + " -> ".join(cycle))
        self.cycle = cycle


@dataclass(frozen=True)
class Family:
    """A kind of activity: ``mult`` instances per period.

    ``label`` is shown in cycles (``decode``), ``phase`` is the cost phase whose price
    sets the duration (None for transport and the input source), ``index`` names the
    instance counter in cycles (``k`` chunk, ``t`` tick, ``c`` call), ``work`` says
    whether it counts as work in the serial sum (the input source does not).
    """

    name: str
    mult: int
    label: str
    phase: str | None = None
    stage: str = ""
    index: str = "k"
    work: bool = True


@dataclass(frozen=True)
class Step:
    """One node instance of a critical cycle: its family, instance index and duration."""

    family: str
    index: int
    duration: float


@dataclass(frozen=True)
class Cycle:
    """A cycle of instances; ``weight / lag`` is its time per period."""

    steps: tuple[Step, ...]
    weight: float
    lag: int

    @property
    def ratio(self) -> float:
        return self.weight / self.lag


Node = tuple[str, int]  # (family, position in the period)


@dataclass
class PeriodicGraph:
    """One unrolled period of a schedule. Build with :meth:`family`, :meth:`node`, :meth:`arc`.

    Invariants: every arc joins declared nodes and has lag >= 0; arcs are kept with
    their maximum weight per (src, dst, lag).
    """

    families: dict[str, Family] = field(default_factory=dict)
    durations: dict[Node, float] = field(default_factory=dict)
    arcs: dict[tuple[Node, Node, int], float] = field(default_factory=dict)

    def family(self, name: str, mult: int, label: str, phase: str | None = None,
               stage: str = "", index: str = "k", work: bool = True) -> None:
        self.families[name] = Family(name, mult, label, phase, stage, index, work)

    def _where(self, family: str, index: int) -> tuple[Node, int]:
        mult = self.families[family].mult
        return (family, index % mult), index // mult

    def node(self, family: str, index: int, duration: float) -> None:
        self.durations[self._where(family, index)[0]] = float(duration)

    def duration(self, family: str, index: int) -> float:
        return self.durations[self._where(family, index)[0]]

    def arc(self, src: tuple[str, int], dst: tuple[str, int], weight: float | None = None) -> None:
        """``dst`` starts no earlier than ``src`` starts plus ``weight`` (default: src's duration).

        Instances are numbered freely (a build of chunk k+2 may precede the decode of k);
        :func:`solve` retimes the graph so that every lag is >= 0.
        """
        s, ps = self._where(*src)
        d, pd = self._where(*dst)
        lag = pd - ps
        w = self.durations[s] if weight is None else float(weight)
        key = (s, d, lag)
        self.arcs[key] = max(w, self.arcs.get(key, NEG))

    def work_per_period(self) -> float:
        """Sum of every work node's duration: the period if nothing overlapped."""
        return sum(d for (f, _), d in self.durations.items() if self.families[f].work)

    def label(self, family: str, index: int) -> str:
        return self.families[family].label

    def cycle_weight(self, cycle: Cycle) -> float:
        """The weight of ``cycle``'s nodes under this graph's durations (for sensitivities)."""
        return sum(self.duration(s.family, s.index) for s in cycle.steps)
