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

A *serial* trace (no two calls ever overlap: the serial policy a calibration replays)
from a saturated source (inputs always ready; a paced source or a probe trace of a
pipeline of one's own may wait between chunks) holds no wait but on the call before,
so its time can be accounted exactly: every call's gap is the time since the last
call of any stage ended, less the sends in between, and the period is the calls plus
the sends plus the gaps. There the fit is the mean of each stage's gaps after dropping
preemptions (over SPIKE robust deviations above the median), so that a serial
prediction carries all the time no span covers: the hand-offs between stages and the
emit and input bookkeeping between chunks too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipefill.sim.fit.robust import within_mads

#: fewest usable gaps before a stage's dispatch gap is fitted
MIN_GAPS = 3
#: the quantile of the usable gaps taken as the stage's gap
QUANTILE = 0.25
#: a serial gap further above the median than this many robust deviations (or than the
#: median itself) is a preemption, not dispatch
SPIKE = 5.0


@dataclass(frozen=True)
class DispatchFit:
    """One stage's fitted gap (ms) from ``gaps`` usable gaps between its calls."""

    stage: str
    ms: float
    gaps: int
    #: how the gaps were taken: between calls of one chunk (lower quartile) or, in a
    #: serial trace, before every call (mean)
    serial: bool = False

    def describe(self) -> str:
        how = ("mean of {n} gaps before its calls in a serial trace" if self.serial
               else "lower quartile of {n} gaps between calls of one chunk")
        return f"dispatch.{self.stage}: {self.ms:.4g} ms, the " + how.format(n=self.gaps)


def fit_dispatch(spans: pd.DataFrame, warmup: int,
                 saturated: bool = False) -> list[DispatchFit]:
    """Per stage, from a trace's spans (compute lane: a batched call's spans count once;
    every other stage's span end rules out a gap it falls in). ``saturated``: the trace
    says its source was saturated (a serial trace is then accounted exactly)."""
    compute = spans[spans["lane"] == "compute"]
    calls = compute.groupby(["stage", "start_ms", "end_ms"], as_index=False)["chunk"].min()
    calls = calls.sort_values("start_ms", kind="stable")
    if saturated and len(calls) > 1 and is_serial(calls):
        return _fit_serial(calls, spans[spans["lane"] == "comm"], warmup)
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


def is_serial(calls: pd.DataFrame) -> bool:
    """No call starts before every earlier call ended (``calls`` sorted by start)."""
    end = calls["end_ms"].to_numpy(dtype=float)
    reach = np.maximum.accumulate(end)[:-1]
    return bool((calls["start_ms"].to_numpy(dtype=float)[1:] >= reach - 1e-9).all())


def serial_gaps(calls: pd.DataFrame, sends: pd.DataFrame) -> np.ndarray:
    """Per call after the first: its start less the end of the call before it, less the
    time sends took in between (a send is transport, priced apart)."""
    start, end = calls["start_ms"].to_numpy(dtype=float), calls["end_ms"].to_numpy(dtype=float)
    a, b = end[:-1], start[1:]
    s0, s1 = sends["start_ms"].to_numpy(dtype=float), sends["end_ms"].to_numpy(dtype=float)
    sent = np.array([np.clip(np.minimum(s1, hi) - np.maximum(s0, lo), 0.0, None).sum()
                     for lo, hi in zip(a, b, strict=True)]) if len(s0) else np.zeros(len(a))
    return np.clip(b - a - sent, 0.0, None)


def _fit_serial(calls: pd.DataFrame, sends: pd.DataFrame, warmup: int) -> list[DispatchFit]:
    gaps = serial_gaps(calls, sends)
    later = calls.iloc[1:]
    fits = []
    for stage in sorted(later["stage"].unique()):
        mine = ((later["stage"] == stage) & (later["chunk"] >= warmup)).to_numpy()
        x = gaps[mine]
        if len(x) < MIN_GAPS:
            continue
        kept = x[within_mads(x, SPIKE, 1.0, upper_only=True)]
        fits.append(DispatchFit(str(stage), float(kept.mean()), len(kept), serial=True))
    return fits
