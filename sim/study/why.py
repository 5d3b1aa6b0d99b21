"""The "why" of a verdict: what sets a point's period, from its bound's critical cycle.

``stage1 busy back to back (recompute[k] -> denoise[k] x2 -> recompute[k+1])`` when the
bottleneck stage alone sets it; ``serialises decode and build (stage0) into stage1's
loop (decode[k] -> ...)`` when a dependency or a queue slot ties another stage's work
into the bottleneck's cycle, which is the brief's "PP didn't help because we
accidentally serialised". The words come from the point's fact columns
(:mod:`pipefill.sim.study.facts`), so a study's JSON carries them too.
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
    return (f"serialises {_and(phases)} ({_and(others)}) into {busiest}'s loop ({chain})")


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
