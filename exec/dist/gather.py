"""The end of a dist replay: what every other rank hands rank0, and rank0's one trace.

Each rank but rank0 posts in the run's store (never pickled: JSON, validated on receipt):

- right after the start clock handshake, its start :class:`SyncPoint` (``sync0``), so a
  rank that dies mid-run is still aligned by its offset;
- at its end (after the end handshake of a run that succeeded, at once after a
  failure) one :class:`RankRecord`: its sync points, the rows it did not ship on a
  link to rank0 (all of a follower's; see :mod:`pipefill.exec.dist.trace`) and its usage: the
  CPU time and compute spans of its stage's thread and the calibrated work its kernels
  ran (the threads backend's measurements, :mod:`pipefill.exec.threads.trust`).

Rank0 waits for the records with a deadline (the run's timeout after a success, a
short grace after a failure, so a dead rank cannot hold the trace back), merges every
rank's rows with :func:`pipefill.traces.merge.merge_ranks` (the code ``pipefill
merge`` runs) and writes under ``meta.dist`` which ranks contributed, each one's clock
offset, drift and handshake round trips, and under ``meta.parallelism`` the threads
backend's record with one "device" per rank (``rank0``, ``rank1``, ...).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from pipefill.exec.dist.config import RankPlan
from pipefill.exec.dist.layout import RankLayout
from pipefill.exec.dist.trace import Row, follower_rows, rows_from_json, to_json
from pipefill.exec.dist.wire import WireError
from pipefill.exec.threads.trust import StageUsage, free_cores, kernel_work_ms, parallelism
from pipefill.traces.clock import ClockError, SyncPoint, parse_points
from pipefill.traces.merge import merge_ranks
from pipefill.traces.schema import Trace, TraceError, from_rows

#: rows per store value: a long run's rows travel in several values
PART_ROWS = 20_000
#: how often rank0 looks for a rank's record
POLL_S = 0.01


class _Absent(Exception):
    """A key a rank never posted."""


@dataclass(frozen=True)
class RankRecord:
    """One rank's end-of-run record.

    ``sync``: its clock handshakes with rank0 (start, then end), empty on rank0;
    ``rows``: trace rows in its own clock; ``cpu_ms``/``spans``: CPU time (ms) and
    compute spans of its stage's thread; ``wait_ms``: time inside those spans spent in
    mesh collectives (waiting for the other mesh ranks); ``work_ms``: calibrated ms its
    kernels ran (None for other kernel families); ``complete``: False when only the
    start sync point arrived (the rank never posted its record).
    """

    rank: int
    sync: tuple[SyncPoint, ...] = ()
    rows: tuple[Row, ...] = ()
    cpu_ms: float = 0.0
    spans: tuple[tuple[float, float], ...] = ()
    wait_ms: float = 0.0
    work_ms: float | None = None
    complete: bool = True

    @classmethod
    def of_rank(cls, plan: RankPlan, usage: StageUsage, kernels: Any,
                sync: list[SyncPoint], rows: list[Row], coll: Any = None) -> RankRecord:
        """This rank's record; ``coll``: the mesh's collectives (their ``wait_ms``)."""
        cpu, spans = usage.of(plan.stage)
        return cls(plan.rank, tuple(sync), tuple(rows), cpu, tuple(spans),
                   0.0 if coll is None else float(coll.wait_ms), kernel_work_ms(kernels))

    def usage_key(self, layout: RankLayout) -> str:
        """Its name in the parallelism record: its stage, ``<stage>@r<k>`` on a follower."""
        group = layout.group_of(self.rank)
        return group.stage if self.rank == group.leader else f"{group.stage}@r{self.rank}"


def _key(rank: int, what: str) -> str:
    return f"trace/{rank}/{what}"


def post_start(store: Any, rank: int, point: SyncPoint) -> None:
    store.set(_key(rank, "sync0"), json.dumps(point.as_list()))


def post_record(store: Any, rec: RankRecord) -> None:
    """Post ``rec`` (rows in parts first, the head last: its key means complete)."""
    rows = [to_json(r) for r in rec.rows]
    parts = max(1, math.ceil(len(rows) / PART_ROWS))
    for i in range(parts):
        store.set(_key(rec.rank, f"rows{i}"), json.dumps(rows[i * PART_ROWS:(i + 1) * PART_ROWS]))
    head = {"sync": [p.as_list() for p in rec.sync], "cpu_ms": rec.cpu_ms,
            "spans": [list(iv) for iv in rec.spans], "wait_ms": rec.wait_ms,
            "work_ms": rec.work_ms, "parts": parts}
    store.set(_key(rec.rank, "head"), json.dumps(head))


def read_records(store: Any, ranks: list[int], wait_s: float
                 ) -> tuple[dict[int, RankRecord], dict[int, str]]:
    """The records of ``ranks`` posted within ``wait_s`` (a rank that posted only its
    start sync point gets an incomplete one), and why each other rank has none."""
    deadline = time.monotonic() + wait_s
    records: dict[int, RankRecord] = {}
    missing: dict[int, str] = {}
    for rank in ranks:
        while not store.check([_key(rank, "head")]) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        try:
            records[rank] = _read(store, rank)
        except (WireError, ClockError, ValueError, TypeError, KeyError) as exc:
            missing[rank] = f"bad record: {exc}"
        except _Absent as exc:  # no head: the start point alone, if any
            start = _start_only(store, rank)
            if start is None:
                missing[rank] = str(exc)
            else:
                records[rank] = start
    return records, missing


def _get(store: Any, key: str) -> Any:
    if not store.check([key]):
        raise _Absent(f"no {key.split('/')[-1]} posted")
    raw = store.get(key)
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _read(store: Any, rank: int) -> RankRecord:
    try:
        head = _get(store, _key(rank, "head"))
    except _Absent:
        raise _Absent(f"rank{rank} posted no end-of-run record") from None
    if not isinstance(head, dict):
        raise ValueError("the record is not an object")
    rows = [r for i in range(int(head["parts"]))
            for r in rows_from_json(_get(store, _key(rank, f"rows{i}")))]
    spans = tuple((float(a), float(b)) for a, b in head["spans"])
    work = head["work_ms"]
    return RankRecord(rank, tuple(parse_points(head["sync"], f"rank{rank}.sync")), tuple(rows),
                      float(head["cpu_ms"]), spans, float(head["wait_ms"]),
                      None if work is None else float(work))


def _start_only(store: Any, rank: int) -> RankRecord | None:
    try:
        point = parse_points([_get(store, _key(rank, "sync0"))], f"rank{rank}.sync0")
    except (_Absent, ClockError, ValueError):
        return None
    return RankRecord(rank, tuple(point), complete=False)


def merged_trace(own: Trace, records: dict[int, RankRecord], streamed: dict[int, list[Row]],
                 missing: dict[int, str], layout: RankLayout) -> Trace:
    """Rank0's trace ``own`` with every other rank's rows on rank0's clock.

    ``streamed``: per leader linked to rank0, the rows that came on its link;
    ``missing``: why a rank has no record. ``meta.dist`` gains ``traced_ranks`` (whose rows are in the trace),
    ``untraced`` (rank -> why not, or why only partly) and ``clock`` (per aligned rank:
    offset, rate, drift in ppm, handshake round trips)."""
    traces = [Trace(own.events, {**own.meta, "probe": {"rank": 0}})]
    for rank, rec in sorted(records.items()):
        rows = follower_rows(list(rec.rows), rank) if _follower(layout, rank) \
            else [*streamed.get(rank, []), *rec.rows]
        traces.append(Trace(from_rows(rows), {"probe": {"rank": rank, "sync": [
            p.as_list() for p in rec.sync]}}))
    merged = merge_ranks(traces, [f"rank{r}" for r in [0, *sorted(records)]])
    clock = {str(info["rank"]): _clock_info(info, records[info["rank"]])
             for info in merged.meta["merge"]["ranks"] if info["rank"] != 0}
    traced = [0, *(r for r, rec in sorted(records.items()) if rec.complete or streamed.get(r))]
    why = {**_partial(records, streamed), **missing}
    for rank in missing:
        if streamed.get(rank):
            why[rank] += f"; its {len(streamed[rank])} streamed rows are left out (no clock)"
    merged.meta["dist"] = {**merged.meta.get("dist", {}), "traced_ranks": traced,
                           "untraced": {str(r): w for r, w in sorted(why.items())},
                           "clock": clock}
    return merged


def _follower(layout: RankLayout, rank: int) -> bool:
    return rank != layout.group_of(rank).leader


def _partial(records: dict[int, RankRecord], streamed: dict[int, list[Row]]
             ) -> dict[int, str]:
    """Why a rank aligned by its start handshake alone is missing rows."""
    out = {}
    for rank, rec in records.items():
        if rec.complete:
            continue
        shipped = (f"only the {len(streamed[rank])} rows it shipped on the link"
                   if streamed.get(rank) else "none of its rows")
        out[rank] = f"posted no end-of-run record (died?): {shipped}"
    return out


def _clock_info(info: dict[str, Any], rec: RankRecord) -> dict[str, Any]:
    return {"offset_ms": info["offset_ms"], "rate": info["rate"],
            "drift_ppm": (info["rate"] - 1.0) * 1e6, "rtt_ms": [p.rtt_ms for p in rec.sync],
            "handshakes": len(rec.sync), "complete": rec.complete, "events": info["events"]}


def merge_or_keep(own: Trace, records: dict[int, RankRecord], streamed: dict[int, list[Row]],
                  missing: dict[int, str], layout: RankLayout) -> Trace:
    """:func:`merged_trace`, or rank0's own rows with the reason when ranks' clocks or
    rows cannot be merged (a crash-only trace is always written)."""
    try:
        return merged_trace(own, records, streamed, missing, layout)
    except TraceError as exc:
        own.meta["dist"] = {**own.meta.get("dist", {}), "traced_ranks": [0],
                            "untraced": {"*": f"merge failed: {exc}"}}
        return own


def dist_parallelism(kind: str, records: list[RankRecord],
                     free: tuple[float | None, float | None],
                     layout: RankLayout) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the parallelism record, one device per rank; per rank CPU ms, compute wall ms
    and the part of it spent in mesh collectives) from complete records (rank0's own
    included). A mesh rank's share leaves out its collective waits: a rank waiting for a
    slower peer is in lockstep, not starved."""
    usage = StageUsage()
    groups: dict[str, tuple[str, ...]] = {}
    work: dict[str, float] = {}
    for rec in records:
        key = rec.usage_key(layout)
        usage.absorb(key, rec.cpu_ms, list(rec.spans), rec.wait_ms)
        groups[f"rank{rec.rank}"] = (key,)
        if rec.work_ms is not None:
            work[key] = rec.work_ms
    per_rank = {f"rank{r.rank}": {"cpu_ms": round(r.cpu_ms, 3),
                                  "wall_ms": round(usage.wall((r.usage_key(layout),)), 3),
                                  "collective_ms": round(r.wait_ms, 3)} for r in records}
    return parallelism(kind, groups, usage, free, work), per_rank


def free_cores_of_run(plan: RankPlan, probe_load: bool, kind: str, ranks_here: int
                      ) -> float | None:
    """Free cores for every rank right now, measured on rank0 while the other ranks wait
    for it (CPU runs whose ranks all share this machine; None elsewhere)."""
    if plan.rank != 0 or not probe_load or kind != "cpu" or ranks_here < 2 \
            or ranks_here != plan.world_size:
        return None
    return free_cores(ranks_here)
