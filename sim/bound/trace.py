"""The analytic period of a simulated trace's scenario (the bound line of a report).

A simulated trace carries its scenario's tables in its metadata (``meta["scenario"]``),
so its bound can be recomputed from the file alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pipefill.sim.bound.analysis import compute_bound
from pipefill.sim.scenario.load import build_scenario
from pipefill.traces.io import read_trace


def bound_of_simulated(paths: Iterable[Path]) -> float | None:
    """The analytic period (ms) of the first simulated trace's scenario, if it has one.

    Best effort: a sweep table, a measured trace or a scenario the bound cannot model
    (any of them raising ``ValueError``/``KeyError``) just means no bound, ``None``.
    """
    for path in paths:
        try:
            meta = read_trace(path).meta
            if meta.get("source") == "sim" and isinstance(meta.get("scenario"), dict):
                return compute_bound(build_scenario(meta["scenario"])).period_ms
        except (ValueError, KeyError):
            continue
    return None
