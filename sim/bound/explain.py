"""The bound in words: a critical cycle as a chain (``decode[k] -> build[k+1] -> ...``)
and the one-line explanation a user can act on."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pipefill.sim.bound import words
from pipefill.sim.graph.periodic import Cycle, PeriodicGraph

if TYPE_CHECKING:
    from pipefill.sim.bound.analysis import Bound


def format_chain(g: PeriodicGraph, cycle: Cycle) -> str:
    """``decode[k] -> build[k+1] -> ...``: zero-length steps left out but a queue slot's
    wait whose arc is on the cycle (``(q_out slot)``: that arc is the slot, not a
    dependency), repeats merged, starting from the earliest instance (ties: the family
    declared first)."""
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
