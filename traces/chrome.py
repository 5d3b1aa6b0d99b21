"""Export a trace as Chrome trace event JSON (opens in Perfetto and chrome://tracing).

Mapping (one event per trace row, plus flows and names):

- one *process* per stage (``pid``), in stage order; counters of stage ``all`` (e.g.
  ``bytes_in_flight``) go to an extra process named ``pipeline``;
- one *thread* per lane of that stage (``tid``: ``compute``, ``comm``, ...). A lane
  whose spans overlap (a measured trace with asynchronous work) is split into
  ``compute``, ``compute #2``, ... so every thread is a proper stack of slices;
- spans are complete events (``ph: X``) whose args carry session, chunk, epoch,
  call_id, step and the depth of every queue when the span started; marks are
  instant events (``ph: i``; a hard cut is global); counters are ``ph: C``;
- **flows** (``ph: s`` -> ``ph: f``) join each ``send`` span to the span where the
  receiver first uses that message: the earliest ``recv`` span with the same session
  and call_id on another stage when the trace has one (the executor may record them),
  else the earliest compute span with the same session and call_id on another stage
  that starts no earlier than the send ends (stage1's recompute or first denoise step
  for an envelope; stage0's decode, or anchor_decode, for a result). A message nobody
  uses (an envelope flushed by a hard cut, a result dropped as stale, the shutdown
  call) has no flow; :class:`ExportStats` counts them.

Timestamps are real microseconds since the run start, quantized to 1/1024 us (about
1 ns): such values are exact binary fractions, so ``ts + dur`` of one slice equals the
next slice's ``ts`` exactly and back-to-back spans never overlap after import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipefill.traces.io import read_table, write_text
from pipefill.traces.schema import Trace, TraceError, validate

#: ticks per microsecond (a power of two keeps tick / TICKS exact in floating point)
TICKS = 1024
#: lane -> rank within a process (threads are sorted by it, then by name)
LANE_ORDER: dict[str, int] = {"compute": 0, "comm": 1, "queue": 2}
#: the stage that holds run-wide counters, and the process name it gets
GLOBAL_STAGE, GLOBAL_PROCESS = "all", "pipeline"
#: mark name -> instant scope (``g``: drawn across every process)
MARK_SCOPES: dict[str, str] = {"hard_cut": "g"}
SEND, RECV = "send", "recv"
#: compute phases may begin this long (ms) before their message's send ends: float noise
EPS_MS = 1e-9


@dataclass(frozen=True)
class ExportStats:
    """Counts of what was written; ``unconsumed`` sends have no receiver (no flow)."""

    spans: int
    marks: int
    counters: int
    flows: int
    unconsumed: int
    processes: int
    threads: int


def _ticks(ms: pd.Series | np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(ms, dtype=float) * 1000.0 * TICKS).astype(np.int64)


def _us(ticks: int | np.integer) -> float:
    return int(ticks) / TICKS


def _num(value: float) -> int | float:
    """Depths and byte counts are whole numbers: write them as such."""
    return int(value) if float(value).is_integer() else float(value)


def _stage_key(stage: str) -> tuple[int, str]:
    return (1 if stage == GLOBAL_STAGE else 0, stage)


class _Threads:
    """Assigns (stage, lane) spans to pids and tids; splits overlapping lanes."""

    def __init__(self, stages: list[str]) -> None:
        self.pid = {s: i + 1 for i, s in enumerate(sorted(set(stages), key=_stage_key))}
        self.names: dict[tuple[int, int], str] = {}
        self._tid: dict[tuple[str, str, int], int] = {}

    def tid(self, stage: str, lane: str, sub: int = 0) -> int:
        key = (stage, lane, sub)
        if key not in self._tid:
            self._tid[key] = len([k for k in self._tid if k[0] == stage]) + 1
            self.names[(self.pid[stage], self._tid[key])] = lane + (f" #{sub + 1}" if sub else "")
        return self._tid[key]

    def assign(self, spans: pd.DataFrame, start: np.ndarray, end: np.ndarray) -> list[int]:
        """tid per span: the first sub-lane of its lane that is free at its start."""
        tids = [0] * len(spans)
        free_at: dict[tuple[str, str], list[int]] = {}
        order = np.lexsort((end, start))
        stages, lanes = spans["stage"].to_numpy(), spans["lane"].to_numpy()
        for i in order:
            subs = free_at.setdefault((str(stages[i]), str(lanes[i])), [])
            sub = next((k for k, t in enumerate(subs) if t <= start[i]), len(subs))
            if sub == len(subs):
                subs.append(0)
            subs[sub] = int(end[i])
            tids[i] = self.tid(str(stages[i]), str(lanes[i]), sub)
        return tids


def _queue_depths(counters: pd.DataFrame, ticks: np.ndarray) -> dict[str, np.ndarray]:
    """Per counter, its value at each of ``ticks`` (the last sample at or before; NaN before)."""
    out: dict[str, np.ndarray] = {}
    for name, grp in counters.groupby("name", sort=True):
        t = _ticks(grp["start_ms"])
        order = np.argsort(t, kind="stable")
        t, v = t[order], grp["value"].to_numpy()[order]
        idx = np.searchsorted(t, ticks, side="right") - 1
        out[str(name)] = np.where(idx >= 0, v[np.clip(idx, 0, None)], np.nan)
    return out


def flow_targets(trace: Trace) -> dict[int, int]:
    """Row index of each send span -> row index of the span that receives it (see module)."""
    sp = trace.spans
    sends = sp[(sp["name"] == SEND) & (sp["call_id"] >= 0)]
    cand = sp[(sp["name"] == RECV) | (sp["lane"] == "compute")]
    cand = cand[cand["call_id"].isin(sends["call_id"])].sort_values("start_ms", kind="stable")
    by_call = {k: g for k, g in cand.groupby(["session", "call_id"], sort=False)}
    out: dict[int, int] = {}
    for idx, s in sends.iterrows():
        grp = by_call.get((s["session"], s["call_id"]))
        if grp is None:
            continue
        other = grp[grp["stage"] != s["stage"]]
        recv = other[other["name"] == RECV]
        if len(recv):
            out[int(idx)] = int(recv.index[0])
            continue
        use = other[(other["lane"] == "compute") & (other["start_ms"] >= s["end_ms"] - EPS_MS)]
        if len(use):
            out[int(idx)] = int(use.index[0])
    return out


def _tag_args(row: Any) -> dict[str, Any]:
    args = {"session": int(row.session), "chunk": int(row.chunk), "epoch": int(row.epoch),
            "call_id": int(row.call_id)}
    if row.step >= 0:
        args["step"] = int(row.step)
    return args


def _span_events(spans: pd.DataFrame, threads: _Threads, counters: pd.DataFrame,
                 ) -> tuple[list[dict[str, Any]], dict[int, tuple[int, int, int, int]]]:
    """X events, and per span row index its (pid, tid, start tick, end tick) for flows."""
    start, end = _ticks(spans["start_ms"]), _ticks(spans["end_ms"])
    tids = threads.assign(spans, start, end)
    depths = _queue_depths(counters, start)
    events, where = [], {}
    for k, row in enumerate(spans.itertuples()):
        pid = threads.pid[str(row.stage)]
        args = _tag_args(row)
        queues = {q: _num(v[k]) for q, v in depths.items() if not np.isnan(v[k])}
        if queues:
            args["queues"] = queues
        events.append({"ph": "X", "name": str(row.name), "cat": str(row.lane), "pid": pid,
                       "tid": tids[k], "ts": _us(start[k]), "dur": _us(end[k] - start[k]),
                       "args": args})
        where[int(row.Index)] = (pid, tids[k], int(start[k]), int(end[k]))
    return events, where


def _mark_events(marks: pd.DataFrame, threads: _Threads) -> list[dict[str, Any]]:
    events = []
    for row, t in zip(marks.itertuples(), _ticks(marks["start_ms"]), strict=True):
        scope = MARK_SCOPES.get(str(row.name), "t")
        events.append({"ph": "i", "s": scope, "name": str(row.name), "cat": "mark",
                       "pid": threads.pid[str(row.stage)],
                       "tid": threads.tid(str(row.stage), str(row.lane)),
                       "ts": _us(t), "args": _tag_args(row)})
    return events


def _counter_events(counters: pd.DataFrame, threads: _Threads) -> list[dict[str, Any]]:
    return [{"ph": "C", "name": str(row.name), "cat": "counter",
             "pid": threads.pid[str(row.stage)], "tid": 0, "ts": _us(t),
             "args": {str(row.name): _num(row.value)}}
            for row, t in zip(counters.itertuples(), _ticks(counters["start_ms"]), strict=True)]


def _flow_events(trace: Trace, where: dict[int, tuple[int, int, int, int]],
                 ) -> list[dict[str, Any]]:
    """An s/f pair per matched send, each inside its slice (``bp: e`` binds to the enclosing
    slice, not the next one)."""
    events = []
    stage = trace.events["stage"]
    for n, (src, dst) in enumerate(sorted(flow_targets(trace).items()), start=1):
        name = f"{stage[src]} -> {stage[dst]}"
        pid, tid, s, e = where[src]
        t_send = (s + e) // 2
        events.append({"ph": "s", "id": n, "name": name, "cat": "message", "pid": pid,
                       "tid": tid, "ts": _us(t_send)})
        pid, tid, s, e = where[dst]
        # a recv may be posted before the send: keep the arrow pointing forward in time
        t_recv = min(max((s + e) // 2, t_send), e)
        events.append({"ph": "f", "bp": "e", "id": n, "name": name, "cat": "message",
                       "pid": pid, "tid": tid, "ts": _us(t_recv)})
    return events


def _metadata_events(threads: _Threads) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for stage, pid in threads.pid.items():
        name = GLOBAL_PROCESS if stage == GLOBAL_STAGE else stage
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                       "args": {"name": name}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                       "args": {"sort_index": pid}})
    for (pid, tid), name in sorted(threads.names.items()):
        lane = name.split(" #")[0]
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                       "args": {"name": name}})
        events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                       "args": {"sort_index": LANE_ORDER.get(lane, 9) * 100 + tid}})
    return events


def to_chrome(trace: Trace) -> tuple[dict[str, Any], ExportStats]:
    """The Chrome trace document of ``trace`` and counts of what it holds."""
    ev = trace.events
    threads = _Threads([str(s) for s in ev["stage"].unique()])
    counters = ev[ev["kind"] == "counter"]
    marks = ev[ev["kind"] == "mark"]
    spans, where = _span_events(trace.spans, threads, counters)
    flows = _flow_events(trace, where)
    body = spans + _mark_events(marks, threads) + _counter_events(counters, threads) + flows
    body.sort(key=lambda e: e["ts"])
    n_sends = int((trace.spans["name"] == SEND).sum())
    stats = ExportStats(len(spans), len(marks), len(counters), len(flows) // 2,
                        n_sends - len(flows) // 2, len(threads.pid), len(threads.names))
    meta = {k: trace.meta.get(k) for k in ("source", "backend", "device", "scenario_name",
                                           "policy", "seed", "git_revision") if k in trace.meta}
    doc = {"traceEvents": _metadata_events(threads) + body, "displayTimeUnit": "ms",
           "otherData": {"pipefill": meta}}
    return doc, stats


def read_exportable(path: str | os.PathLike[str]) -> Trace:
    """Read a trace to export; a sweep table gets a clear error instead of a missing column."""
    df, meta = read_table(path)
    if meta.get("kind") == "sweep":
        raise TraceError(str(path), "is a sweep table, not a trace (report it with "
                         "`pipefill report`)")
    return Trace(validate(df), meta)


def export_chrome(trace: Trace, path: str | os.PathLike[str]) -> ExportStats:
    """Write ``trace`` as Chrome trace JSON to ``path`` (atomically; must end in .json)."""
    target = Path(path)
    if target.suffix.lower() != ".json":
        raise TraceError("--out", f"{target.name}: a Chrome trace is a .json file")
    doc, stats = to_chrome(trace)
    write_text(target, json.dumps(doc, allow_nan=False, separators=(",", ":")))
    return stats
