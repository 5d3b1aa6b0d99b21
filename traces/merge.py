"""Merge per-rank traces into one: every rank's events on rank 0's clock.

Each rank's file carries, under ``meta.probe``, its ``rank`` and the ``sync`` points of
its clock handshakes with rank 0 (see :mod:`pipefill.traces.clock`). A rank's times
are mapped to rank 0's clock by the line through its first and last sync point
(offset and drift); rank 0's are kept. If the earliest merged event falls before rank
0's time zero, everything is shifted so the run starts at 0 (``meta.merge.shift_ms``).
The result passes :func:`pipefill.traces.measured.check_measured`.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from pipefill.traces.clock import IDENTITY, ClockError, ClockMap, fit_clock, parse_points
from pipefill.traces.measured import check_measured
from pipefill.traces.schema import Trace, TraceError

#: the rank whose clock every other rank is aligned to
REFERENCE_RANK = 0


def _rank_of(trace: Trace, label: str) -> int:
    probe = trace.meta.get("probe")
    rank = probe.get("rank") if isinstance(probe, dict) else None
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise TraceError("meta.probe.rank", f"{label}: missing or not a rank number "
                         "(merge takes files saved by pipefill.probe, one per rank)")
    return rank


def _clock_of(trace: Trace, rank: int, label: str) -> ClockMap:
    raw = trace.meta["probe"].get("sync", [])
    try:
        points = parse_points(raw, f"meta.probe.sync ({label})")
        if rank == REFERENCE_RANK:
            return IDENTITY
        if not points:
            raise ClockError(f"meta.probe.sync ({label})", f"rank {rank} has no clock "
                             "handshake with rank 0 (call rec.sync(...) at start and end)")
        return fit_clock(points, f"meta.probe.sync ({label})")
    except ClockError as exc:
        raise TraceError(exc.field, str(exc).split(": ", 1)[1]) from None


def _aligned(trace: Trace, clock: ClockMap) -> pd.DataFrame:
    ev = trace.events.copy()
    for col in ("start_ms", "end_ms"):
        ev[col] = clock.offset_ms + clock.rate * ev[col].to_numpy(dtype=float)
    return ev


def _base_meta(traces: list[tuple[int, str, Trace]]) -> dict[str, Any]:
    """Rank 0's metadata (else the lowest rank's), filling policy/run from other ranks."""
    meta = {k: v for k, v in traces[0][2].meta.items() if k != "probe"}
    for _, _, tr in traces[1:]:
        for key in ("policy", "run", "costs", "transport"):
            if key not in meta and key in tr.meta:
                meta[key] = tr.meta[key]
    return meta


def merge_ranks(traces: list[Trace], labels: list[str] | None = None) -> Trace:
    """One trace of every rank's events on the reference clock (module docstring)."""
    if not traces:
        raise TraceError("ranks", "no rank files to merge")
    labels = labels or [f"file {i + 1}" for i in range(len(traces))]
    ranked = sorted(((_rank_of(t, lb), lb, t) for t, lb in zip(traces, labels, strict=True)),
                    key=lambda x: x[0])
    ranks = [r for r, _, _ in ranked]
    dup = next((r for r, n in itertools.pairwise(ranks) if r == n), None)
    if dup is not None:
        names = [lb for r, lb, _ in ranked if r == dup]
        raise TraceError("meta.probe.rank", f"rank {dup} appears twice ({', '.join(names)})")
    if ranks[0] != REFERENCE_RANK:
        got = ", ".join(f"rank {r} ({lb})" for r, lb, _ in ranked)
        raise TraceError("ranks", f"no rank {REFERENCE_RANK} file among {got}: rank "
                         f"{REFERENCE_RANK}'s clock is the one every rank is aligned to, "
                         "and its events are part of the run; pass its file too")
    frames, info = [], []
    for rank, label, tr in ranked:
        clock = _clock_of(tr, rank, label)
        frames.append(_aligned(tr, clock))
        info.append({"rank": rank, "file": label, "offset_ms": clock.offset_ms,
                     "rate": clock.rate, "events": len(tr.events)})
    events = pd.concat(frames, ignore_index=True)
    shift = -float(events["start_ms"].min()) if len(events) else 0.0
    shift = max(shift, 0.0)
    events["start_ms"] += shift
    events["end_ms"] += shift
    order = np.lexsort((np.arange(len(events)), events["start_ms"].to_numpy()))
    events = events.iloc[order].reset_index(drop=True)
    meta = _base_meta(ranked)
    meta["source"] = meta.get("source", "probe")
    meta["merge"] = {"ranks": info, "shift_ms": shift, "reference_rank": REFERENCE_RANK}
    return check_measured(Trace(events, meta))
