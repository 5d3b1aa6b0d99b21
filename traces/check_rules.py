"""The rules of :mod:`pipefill.traces.check`, one function each.

A rule takes the validated event table (time order, ties in recording order) and the
policy facts, and returns ``(rows broken, first broken row, detail)``, or a string: the
reason it cannot be checked on this trace. Wait-lane spans (what a stage waited on) are
annotations, not work: no rule reads them except the lane-overlap rule's exclusion.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipefill.traces.facts import PolicyFacts
from pipefill.traces.schema import WAIT_LANE

Outcome = tuple[int, "RowRef | None", str] | str
#: overlap (ms) below which two spans count as back to back (float noise of clocks)
EPS_MS = 1e-6
#: the lanes a stage runs its work on (``compute``, a mesh follower's ``compute@r2``)
COMPUTE = "compute"
#: lanes whose spans are annotations (what a stage waited on), not work
#: a mesh follower's lane: ``compute@r2`` is rank 2's span of the leader's ``compute`` call
RANK_LANE = re.compile(r"^(?P<lane>.+)@r(?P<rank>\d+)$")


@dataclass(frozen=True)
class RowRef:
    """The row a report points at: what it is, where and when."""

    kind: str
    name: str
    stage: str
    lane: str
    session: int
    chunk: int
    call_id: int
    epoch: int
    time_ms: float

    @classmethod
    def of(cls, row: Any) -> RowRef:
        return cls(str(row["kind"]), str(row["name"]), str(row["stage"]), str(row["lane"]),
                   int(row["session"]), int(row["chunk"]), int(row["call_id"]),
                   int(row["epoch"]), float(row["start_ms"]))

    def describe(self) -> str:
        return (f"{self.kind} {self.name} on {self.stage}, chunk {self.chunk}, call_id "
                f"{self.call_id}, epoch {self.epoch} at {self.time_ms:.3f} ms")

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def _first(df: pd.DataFrame, bad: np.ndarray) -> tuple[int, RowRef | None]:
    n = int(bad.sum())
    return n, (RowRef.of(df.iloc[int(np.flatnonzero(bad)[0])]) if n else None)


def _marks(ev: pd.DataFrame, *names: str) -> pd.DataFrame:
    return ev[(ev["kind"] == "mark") & ev["name"].isin(names)]


def _work_spans(ev: pd.DataFrame) -> pd.DataFrame:
    lane = ev["lane"].astype(str)
    return ev[(ev["kind"] == "span") & ~lane.str.startswith(WAIT_LANE)]


def emit_once(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    em = _marks(ev, "emit")
    if not len(em):
        return "no emit marks in the trace"
    n, first = _first(em, em.duplicated(["session", "chunk"], keep="first").to_numpy())
    if first is None:
        return 0, None, f"{len(em)} emits, each chunk once"
    return n, first, f"chunk {first.chunk} of session {first.session} emitted again"


def emit_complete(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    em = _marks(ev, "emit")
    if not len(em):
        return "no emit marks in the trace"
    dropped = _marks(ev, "drop")
    missing, first, where = 0, None, ""
    for s, grp in em.groupby("session", sort=True):
        done = set(grp["chunk"]) | set(dropped.loc[dropped["session"] == s, "chunk"])
        lo, hi = min(done), int(grp["chunk"].max())
        gaps = [c for c in range(lo, hi) if c not in done]
        missing += len(gaps)
        if gaps:
            after = grp[grp["chunk"] > gaps[0]].iloc[0]
            ref = RowRef.of(after)
            if first is None or ref.time_ms < first.time_ms:
                first = ref
                where = (f"chunk {gaps[0]} of session {s} never emitted nor dropped "
                         f"(chunk {ref.chunk} emitted at {ref.time_ms:.3f} ms)")
    return missing, first, where or "no chunk skipped"


def emit_order(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    em = _marks(ev, "emit")
    if not len(em):
        return "no emit marks in the trace"
    bad = np.zeros(len(em), dtype=bool)
    pos = {s: np.flatnonzero(em["session"].to_numpy() == s) for s in em["session"].unique()}
    chunk = em["chunk"].to_numpy()
    for idx in pos.values():
        c = chunk[idx]
        before = np.maximum.accumulate(np.concatenate([[np.iinfo(np.int64).min], c[:-1]]))
        bad[idx] = c < before
    n, first = _first(em, bad)
    return n, first, (f"chunk {first.chunk} emitted after a later chunk" if first else
                      "in order")


def stale_epoch(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    rows = _marks(ev, "emit", "hard_cut")
    cuts = rows["name"].to_numpy() == "hard_cut"
    if not cuts.any():
        return 0, None, "no hard cut in the trace: no epoch can be stale"
    bad = np.zeros(len(rows), dtype=bool)
    sess, epoch = rows["session"].to_numpy(), rows["epoch"].to_numpy()
    for s in np.unique(sess):
        idx = np.flatnonzero(sess == s)
        cut_epoch = np.where(cuts[idx], epoch[idx], np.iinfo(np.int64).min)
        current = np.maximum.accumulate(cut_epoch)
        bad[idx] = ~cuts[idx] & (epoch[idx] < current)
    n, first = _first(rows, bad)
    return n, first, (f"an epoch-{first.epoch} frame emitted after a hard cut to a later "
                      "epoch" if first else f"{int(cuts.sum())} hard cut(s), no stale emit")


def epoch_order(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    rows = _marks(ev, "emit", "hard_cut")
    if not len(rows):
        return "no emit or hard_cut marks in the trace"
    bad = np.zeros(len(rows), dtype=bool)
    keys = rows["session"].astype(str) + "/" + rows["name"].astype(str)
    epoch = rows["epoch"].to_numpy()
    for key in keys.unique():
        idx = np.flatnonzero((keys == key).to_numpy())
        e = epoch[idx]
        before = np.maximum.accumulate(np.concatenate([[np.iinfo(np.int64).min], e[:-1]]))
        bad[idx] = e < before
    n, first = _first(rows, bad)
    return n, first, (f"{first.name} of epoch {first.epoch} after a later epoch" if first
                      else "epochs never decrease")


def call_id_order(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    sp = _work_spans(ev)
    sp = sp[sp["call_id"] >= 0]
    if not len(sp):
        return "no call ids in the trace (call_id = -1 on every span)"
    bad = np.zeros(len(sp), dtype=bool)
    groups = sp.groupby(["stage", "lane", "session", "name", "step"], sort=False).indices
    cid = sp["call_id"].to_numpy()
    for idx in groups.values():
        c = cid[idx]
        bad[idx[1:]] = c[1:] <= np.maximum.accumulate(c)[:-1]
    n, first = _first(sp, bad)
    return n, first, (f"{first.name} of call_id {first.call_id} on {first.stage} after a "
                      "call with a larger or equal id" if first else
                      f"{len(sp)} spans with call ids, increasing")


def rank_calls(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    sp = _work_spans(ev)
    lanes = sp["lane"].astype(str)
    follower = lanes.str.match(RANK_LANE.pattern)
    if not follower.any():
        return "one rank per stage (no compute@r<rank> lanes): a single-rank trace"
    key = ["session", "call_id", "name", "step"]
    broken, first, detail = 0, None, ""
    for (stage, lane), grp in sp[follower].groupby(["stage", "lane"], sort=True):
        base = RANK_LANE.match(str(lane))
        assert base is not None
        lead = sp[(sp["stage"] == stage) & (lanes == base["lane"])]
        mine, theirs = (Counter(map(tuple, g[key].to_numpy().tolist())) for g in (grp, lead))
        diff = (mine - theirs) + (theirs - mine)
        if not diff:
            continue
        broken += sum(diff.values())
        rows = pd.concat([grp, lead])
        hit = rows[[tuple(r) in diff for r in rows[key].to_numpy().tolist()]]
        ref = RowRef.of(hit.sort_values("start_ms", kind="stable").iloc[0])
        if first is None or ref.time_ms < first.time_ms:
            first = ref
            detail = (f"rank {base['rank']} ran {len(grp)} calls on {stage} where the leader "
                      f"ran {len(lead)}; first difference: {ref.name} of chunk {ref.chunk}")
    return broken, first, detail or "every rank ran the leader's calls"


def span_overlap(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    """A stage's compute lanes (a rank's too) run one thing at a time; a comm lane may
    carry several messages at once (asynchronous sends) and the wait lane annotates."""
    sp = _work_spans(ev)
    sp = sp[sp["lane"].astype(str).str.startswith(COMPUTE)]
    if not len(sp):
        return "no compute spans in the trace"
    bad = np.zeros(len(sp), dtype=bool)
    start, end = sp["start_ms"].to_numpy(), sp["end_ms"].to_numpy()
    for idx in sp.groupby(["stage", "lane"], sort=False).indices.values():
        idx = idx[np.lexsort((end[idx], start[idx]))]
        s, e = start[idx], end[idx]
        reach = np.maximum.accumulate(e)
        same = (s[1:] == s[:-1]) & (e[1:] == e[:-1])  # items of one batched call
        bad[idx[1:]] = (s[1:] < reach[:-1] - EPS_MS) & ~same
    n, first = _first(sp, bad)
    return n, first, (f"{first.name} of chunk {first.chunk} starts before the previous span "
                      f"on {first.stage}/{first.lane} ended" if first else
                      "no two compute spans of a stage's lane overlap")


def time_range(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    rows = ev[ev["kind"] != "counter"]
    if not len(rows):
        return "no marks or spans in the trace"
    bad = (rows["start_ms"] < -EPS_MS).to_numpy()
    if facts.run_end_ms is not None:
        bad |= (rows["end_ms"] > facts.run_end_ms + EPS_MS).to_numpy()
    n, first = _first(rows, bad)
    end = (f"before the run's end ({facts.run_end_ms:.3f} ms)" if facts.run_end_ms is not None
           else "(the trace records no end of run: only its start, 0 ms, is checked)")
    return n, first, (f"{first.kind} {first.name} outside the run" if first else
                      f"{len(rows)} marks and spans start at or after 0 ms {end}")


def queue_capacity(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    if not facts.queues:
        return (f"policy {facts.policy} has no bounded queues" if facts.policy else
                "the trace names no policy: queue capacities unknown")
    ctr = ev[(ev["kind"] == "counter")]
    cap = {q.name: q.capacity for q in facts.queues}
    ctr = ctr[ctr["name"].isin(list(cap))]
    if not len(ctr):
        return f"no depth counters for {', '.join(cap)} in the trace"
    limit = ctr["name"].map(cap).to_numpy(dtype=float)
    n, first = _first(ctr, ctr["value"].to_numpy(dtype=float) > limit)
    if first is None:
        return 0, None, (f"{len(ctr)} depth samples within capacity ("
                         + ", ".join(f"{k} {v}" for k, v in cap.items()) + ")")
    row = ctr.iloc[int(np.flatnonzero(ctr["value"].to_numpy(dtype=float) > limit)[0])]
    return n, first, f"{first.name} held {row['value']:g} > capacity {cap[first.name]}"


def bytes_bound(ev: pd.DataFrame, facts: PolicyFacts) -> Outcome:
    ctr = ev[(ev["kind"] == "counter") & (ev["name"] == "bytes_in_flight")]
    if not len(ctr):
        return "no bytes_in_flight counter in the trace"
    if facts.bytes_bound is None:
        return facts.bytes_reason
    value = ctr["value"].to_numpy(dtype=float)
    n, first = _first(ctr, value > facts.bytes_bound + 0.5)
    peak = float(value.max())
    return n, first, (f"{peak:.0f} bytes in flight > bound {facts.bytes_bound:.0f}" if first
                      else f"peak {peak:.0f} <= bound {facts.bytes_bound:.0f} bytes")
