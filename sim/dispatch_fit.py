"""Fit each stage's dispatch gap from a measured trace: the time between its calls.

A stage does not start a call the instant its previous one ends: launching a kernel,
queue bookkeeping and recording take time that no span covers (``[dispatch]`` in a
scenario; the simulator adds it before each call). The gaps between a stage's
consecutive calls mix that time with waits on other stages, so only the gaps that
cannot hold a wait are used: between two calls of the same chunk (a stage's next phase
of a chunk needs only its previous one) during which no other stage ended a call or a
send (serial's build -> decode of one chunk waits for the generator's result; a trace
may lack send spans, so the other stages' calls count too). The fit is the
lower quartile of those gaps (a wait that slipped through only raises the upper ones);
a stage with fewer than MIN_GAPS of them keeps no gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: fewest usable gaps before a stage's dispatch gap is fitted
MIN_GAPS = 3
#: the quantile of the usable gaps taken as the stage's gap
QUANTILE = 0.25


@dataclass(frozen=True)
class DispatchFit:
    """One stage's fitted gap (ms) from ``gaps`` usable gaps between its calls."""

    stage: str
    ms: float
    gaps: int

    def describe(self) -> str:
        return (f"dispatch.{self.stage}: {self.ms:.4g} ms, the lower quartile of {self.gaps} "
                "gaps between calls of one chunk")


def fit_dispatch(spans: pd.DataFrame, warmup: int) -> list[DispatchFit]:
    """Per stage, from a trace's spans (compute lane: a batched call's spans count once;
    every other stage's span end rules out a gap it falls in)."""
    compute = spans[spans["lane"] == "compute"]
    fits = []
    for stage, own in compute.groupby("stage", sort=True):
        calls = own.groupby(["start_ms", "end_ms"], as_index=False)["chunk"].min()
        calls = calls.sort_values("start_ms", kind="stable")
        arrivals = np.sort(spans.loc[spans["stage"] != stage, "end_ms"].to_numpy(dtype=float))
        gaps = _usable(calls, arrivals, warmup)
        if len(gaps) >= MIN_GAPS:
            fits.append(DispatchFit(str(stage), float(np.quantile(gaps, QUANTILE)), len(gaps)))
    return fits


def _usable(calls: pd.DataFrame, arrivals: np.ndarray, warmup: int) -> np.ndarray:
    """Gaps between consecutive calls of one steady-state chunk that no other stage's
    span ended in."""
    start, end = calls["start_ms"].to_numpy(), calls["end_ms"].to_numpy()
    chunk = calls["chunk"].to_numpy()
    a, b = end[:-1], start[1:]
    same = (chunk[1:] == chunk[:-1]) & (chunk[1:] >= warmup) & (b >= a)
    quiet = np.searchsorted(arrivals, b, "right") == np.searchsorted(arrivals, a, "right")
    return (b - a)[same & quiet]
