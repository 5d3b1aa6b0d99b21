"""The summary of one fast-path configuration: the same keys as ``compute_metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipefill.traces.metrics import SUMMARY_KEYS, counter_mean, steady_fields, window_part

if TYPE_CHECKING:
    from pipefill.sim.fast.feed import BatchFeed


def fast_summary(feed: BatchFeed, j: int, rel: float | None = None) -> dict[str, Any]:
    """Column ``j``'s metrics once its window is finished (single-session schedules)."""
    col = feed.cols[j]
    sc, w = col.sc, col.stats
    res: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    missing: dict[str, str] = {}
    notes: dict[str, str] = {}
    warmup = None if sc.run.warmup == "auto" else int(sc.run.warmup)
    res.update(chunks=w.emits, warmup=warmup if warmup is not None else w.first_pos,
               bursty=None, bubble={}, hard_cuts=feed.hard_cuts, drops=feed.drops)
    if w.emits and np.isfinite(col.first_input):
        res["ttff_ms"] = float(w.t_first - col.first_input)
    else:
        missing["ttff_ms"] = "no emit" if not w.emits else "no input marks in the trace"
    stages = set(feed.plan.stages)
    window_part(res, missing, notes, w, stages, sc.run.frames_per_chunk, warmup)
    _queues(res, missing, feed, j)
    if sc.run.target_fps is None:
        missing["deadline_misses"] = "no run.target_fps given"
    elif w.emits:
        res["deadline_misses"] = col.misses
    res["bubble_run"] = _run_bubbles(feed, j)
    res["missing"], res["notes"], res["source"] = missing, notes, "sim"
    res.update(steady_fields(w, rel))
    return res


def _queues(res: dict[str, Any], missing: dict[str, str], feed: BatchFeed, j: int) -> None:
    col = feed.cols[j]
    got = col.queues.summary()
    res["queues"] = {}
    for name, stats in sorted(got["queues"].items()):
        first = float(col.queues.first[col.queues.names.index(name)])
        mean = counter_mean(col.stats, name, first)
        res["queues"][name] = {**stats, **({"mean": mean} if mean is not None else {})}
    for key in ("q_in", "q_out"):
        name = key if key in res["queues"] else f"{key}.0"
        if name in res["queues"]:
            res[f"{key}_max"] = int(res["queues"][name]["max"])
        else:
            missing[f"{key}_max"] = f"no {key} counter in the trace"
    if got["peak_bytes"] is not None:
        res["peak_bytes_in_flight"] = got["peak_bytes"]
    else:
        missing["peak_bytes_in_flight"] = "no bytes_in_flight counter in the trace"
        missing["memory"] = "no bytes_in_flight counter in the trace"
    res["memory"] = got["memory"]


def _run_bubbles(feed: BatchFeed, j: int) -> dict[str, float]:
    """Idle share of each stage from the first input to the last emit."""
    col = feed.cols[j]
    x1, x0 = float(feed.run1[j]), col.first_input if np.isfinite(col.first_input) else 0.0
    if not x1 > x0:
        return {}
    xs = np.array([x1])
    return {st: 1.0 - float(feed.spans[s].busy_at(j, xs)[0]) / (x1 - x0)
            for s, st in sorted(enumerate(feed.plan.stages), key=lambda p: p[1])}
