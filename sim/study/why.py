"""The "why" of a verdict: what sets a point's period, from its bound's critical cycle, in
the words ``explain`` uses for measured idle time (``sim/bound/words.py``).

``stage1 busy back to back (recompute[k] -> denoise[k] x2 -> recompute[k+1])`` when the
bottleneck stage alone sets it; ``backpressure (q_out's 1 slot) serialises build and
decode (stage0) into stage1's loop (decode[k] -> (q_out slot) -> ...)`` or ``a
dependency serialises ...`` when a queue slot or a dependency ties another stage's work
into the bottleneck's cycle: the brief's "PP didn't help because we accidentally
serialised". The words come from the point's fact columns
(:mod:`pipefill.sim.study.facts`), so a study's JSON carries them too. The key points
of a verdict also get ``explain``'s verdict on their simulated trace
(:mod:`pipefill.sim.study.explained`).
"""

from __future__ import annotations

from typing import Any


def why(row: dict[str, Any]) -> str:
    """One clause on what sets this point's period ('' when the bound has none)."""
    chain = row.get("critical_cycle")
    if not chain:
        return ""
    stages = str(row.get("critical_stages") or "").split()
    phases = str(row.get("loop_phases") or "").split()
    busiest = row.get("busiest") or (stages[0] if stages else "")
    if len(stages) <= 1 or not phases:
        return f"{stages[0] if stages else busiest} busy back to back ({chain})"
    others = [s for s in stages if s != busiest]
    return (f"{_cause(row)} serialises {_and(phases)} ({_and(others)}) into {busiest}'s "
            f"loop ({chain})")


def _cause(row: dict[str, Any]) -> str:
    """What closes the loop: ``backpressure (q_out's 1 slot)``, ``a dependency``."""
    limit, queue, slots = row.get("limit"), row.get("limit_queue"), row.get("limit_slots")
    if limit == "backpressure" and queue:
        return f"backpressure ({queue}'s {slots} slot{'s' if slots != 1 else ''})"
    if limit == "fill/drain bubbles":
        return f"each batch's fill and drain{f' (on {queue})' if queue else ''}"
    if limit == "source-bound":
        return "the source's inputs"
    return "a dependency"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
