"""The critical cycle in the words ``explain`` uses for measured idle time.

A cycle of the event graph is a loop of waits. What kind of wait closes it says what
kind of limit it is, in the domain brief's categories: a queue slot (``slot:Q``, the
n-th Release feeding the (n + capacity)-th Reserve) is ``backpressure``, not a
dependency; the source's input is ``source-bound``; a batch boundary (``fill:Q``,
``drain:Q``) is ``fill/drain bubbles``; one stage busy back to back is ``stage
imbalance``; any other loop through several stages is a ``dependency``.

A slot is the limit only if more slots would shorten the period: when the cycle that
the solver returned ties with another one (a layer pipeline's link holds a whole
batch, so its slot and the batch's flush bind at once), :func:`limiting` drops the
slot's arcs and reports the loop that still sets the period.
"""

from __future__ import annotations

from pipefill.sim.graph.maxplus import solve
from pipefill.sim.graph.periodic import Cycle, DeadlockCycle, Family, PeriodicGraph

SLOT, INPUT = "slot:", "input"
BATCH = ("fill:", "drain:")


def is_slot(f: Family) -> bool:
    """A zero-length wait for a queue slot."""
    return f.phase is None and f.label.startswith(SLOT)


def slot_name(f: Family) -> str:
    return f"({f.label.removeprefix(SLOT)} slot)"


def _track(f: Family) -> str:
    """The track a family's nodes sit on (a stage, a lane, the source)."""
    return f.name.split("#", 1)[0] if "#" in f.name else f.stage


def binding(g: PeriodicGraph, cycle: Cycle) -> set[int]:
    """Indices of the cycle's wait steps entered from another track: the wait's own arc
    (a slot's release, an arrival, an input) is on the cycle, not just its stage's
    program order running through it."""
    steps, out = cycle.steps, set()
    for i, s in enumerate(steps):
        f = g.families[s.family]
        if f.phase is None and s.duration == 0:
            prev = g.families[steps[i - 1].family]
            if _track(prev) != _track(f):
                out.add(i)
    return out


def _slots(g: PeriodicGraph, cycle: Cycle) -> list[str]:
    """Families of the cycle's binding slot waits, in cycle order."""
    return list(dict.fromkeys(g.families[cycle.steps[i].family].name
                              for i in sorted(binding(g, cycle))
                              if is_slot(g.families[cycle.steps[i].family])))


def _without(g: PeriodicGraph, slots: set[str]) -> Cycle | None:
    """The critical cycle once these slot waits take no arc from another track (as if
    their queues had unbounded slots); None when nothing recurs any more."""
    arcs = {k: w for k, w in g.arcs.items()
            if not (k[1][0] in slots
                    and _track(g.families[k[0][0]]) != _track(g.families[k[1][0]]))}
    try:
        return solve(PeriodicGraph(g.families, g.durations, arcs)).cycle
    except (DeadlockCycle, ValueError):
        return None


def category(g: PeriodicGraph, cycle: Cycle, one_stage_busy: bool) -> tuple[str, str]:
    """(category, queue) of a critical cycle (module docstring). Of several slots on
    the cycle, the queue named is the one whose extra slots shorten the period most."""
    slots = _slots(g, cycle)
    if slots:
        def left(fam: str) -> float:
            other = _without(g, {fam})
            return other.ratio if other is not None else 0.0

        best = min(slots, key=left) if len(slots) > 1 else slots[0]
        return "backpressure", g.families[best].label.removeprefix(SLOT)
    bound = binding(g, cycle)
    waits = [g.families[s.family].label for i, s in enumerate(cycle.steps)
             if i in bound or (g.families[s.family].phase is None and s.duration > 0)]
    if INPUT in waits:
        return "source-bound", ""
    batch = next((w for w in waits if w.startswith(BATCH)), None)
    if batch is not None:
        return "fill/drain bubbles", batch.split(":", 1)[1]
    return ("stage imbalance", "") if one_stage_busy else ("dependency", "")


def why(cat: str, queue: str, slots: int, lag: int, stages: tuple[str, ...], chain: str) -> str:
    """The clause of ``bound``'s one line that says what sets the period."""
    through = (f"over {lag} chunk(s) through {' and '.join(stages)}" if stages else
               f"over {lag} chunk(s)")
    if cat == "backpressure":
        return (f"is set by backpressure: {queue}'s {slots} slot(s) close a loop {through}: "
                f"{chain}")
    if cat == "source-bound":
        return f"is set by the source: its inputs close a loop {through} ({chain})"
    if cat == "fill/drain bubbles":
        return f"is set by each batch's fill and drain (on {queue}), a loop {through}: {chain}"
    return f"is set by a dependency loop {through}: {chain}"


def limiting(g: PeriodicGraph, cycle: Cycle) -> Cycle:
    """The critical cycle to report: ``cycle`` unless its slot arcs can go without the
    period changing (module docstring); then the cycle that remains critical."""
    for _ in range(4):
        slots = set(_slots(g, cycle))
        other = _without(g, slots) if slots else None
        if other is None or other.ratio < cycle.ratio - 1e-9 * max(1.0, abs(cycle.ratio)):
            return cycle  # no slot, or the slots are the limit
        cycle = other
    return cycle
