"""Every rank's spans in a dist trace: clock handshakes at start and end (offset and
drift, the probe's mechanism), the merge `pipefill merge` runs, follower spans on their
own lane so stage busy counts a tensor-parallel call once, and the parallelism each rank
had (the threads backend's record and warnings)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.exec.dist import gather, rendezvous
from pipefill.exec.dist.config import RankPlan
from pipefill.exec.dist.gather import (
    RankRecord,
    dist_parallelism,
    merged_trace,
    post_record,
    post_start,
    read_records,
)
from pipefill.exec.dist.layout import RankGroup, RankLayout
from pipefill.exec.dist.trace import DrainRecorder, follower_rows
from pipefill.traces.clock import SyncPoint
from pipefill.traces.io import read_trace
from pipefill.traces.metrics import compute_metrics
from pipefill.traces.recorder import Recorder, Tag
from pipefill.traces.schema import Trace
from tests.helpers.dist import FAST, dist_cal, run_token

__all__ = ["dist_cal", "run_token"]  # fixtures shared from tests.helpers.dist

runner = CliRunner()
#: rank2's clock against rank0's: ref = OFFSET + RATE * local (exact in binary)
OFFSET, RATE = 4.0, 1.0 + 2.0 ** -10


def _rank0_and_mesh(size: int) -> RankLayout:
    """A front stage on rank0 and a tensor-parallel stage on ranks 1..size."""
    return RankLayout("phase_pp", (RankGroup("stage0", (0,)),
                                   RankGroup("stage1", tuple(range(1, size + 1)))), ())


MESH3, MESH4 = _rank0_and_mesh(2), _rank0_and_mesh(3)


class FakeLink:
    """rank0 at the far end of ``dist.send``/``dist.recv``: each message takes
    ``delays[i]`` ms of true time one way; rank2's clock is the true time and rank0's
    reads OFFSET + RATE * true time."""

    def __init__(self, delays: list[float]) -> None:
        self.t, self.delays, self.i = 0.0, delays, 0

    def send(self, buf: torch.Tensor, dst: int) -> None:
        assert dst == 0
        self.t += self.delays[self.i]

    def recv(self, buf: torch.Tensor, src: int) -> None:
        buf.fill_(OFFSET + RATE * self.t)
        self.t += self.delays[self.i]
        self.i += 1


def _sync(link: FakeLink, monkeypatch: pytest.MonkeyPatch, at: float):
    link.t = at
    monkeypatch.setattr(rendezvous, "dist", link)
    return rendezvous.sync_clock(RankPlan(2, MESH3), torch.device("cpu"), lambda: link.t,
                                 rounds=3)


def test_a_follower_is_aligned_by_the_line_through_its_start_and_end_handshakes(monkeypatch):
    link = FakeLink([1.0, 0.25, 0.5, 0.5, 2.0, 0.125])
    start = _sync(link, monkeypatch, 0.0)  # rounds start at 0, 2, 2.5: the 0.25 one wins
    end = _sync(link, monkeypatch, 1024.0)  # rounds at 1024, 1025, 1029: the 0.125 one
    assert start is not None and end is not None
    assert start.as_list() == [2.25, OFFSET + RATE * 2.25, 0.5]
    assert end.as_list() == [1029.125, OFFSET + RATE * 1029.125, 0.25]
    rec = DrainRecorder()
    rec.span("denoise", "stage1", "compute", Tag(0, 1, 1, 0, 0), 512.0, 768.0)
    rec.mark("emit", "stage1", Tag(0, 1), 770.0)  # the leader's business: dropped
    own = Recorder()
    own.span("build", "stage0", "compute", Tag(0, 1, 1), 100.0, 200.0)
    follower = RankRecord(2, (start, end), tuple(rec.take()))
    merged = merged_trace(own.trace({"source": "exec", "dist": {"world_size": 3}}),
                          {2: follower}, {}, {}, MESH3)
    sp = merged.spans.sort_values("start_ms")
    assert list(zip(sp["stage"], sp["lane"], sp["start_ms"], sp["end_ms"], strict=True)) == [
        ("stage0", "compute", 100.0, 200.0),
        ("stage1", "compute@r2", 516.5, 772.75)]  # 4 + 512 * (1 + 2^-10), 4 + 768 * ...
    assert merged.marks("emit").empty
    clock = merged.meta["dist"]["clock"]["2"]
    assert (clock["offset_ms"], clock["rate"], clock["drift_ppm"]) == (4.0, RATE, 976.5625)
    assert (clock["rtt_ms"], clock["handshakes"], clock["complete"]) == ([0.5, 0.25], 2, True)
    assert merged.meta["dist"]["traced_ranks"] == [0, 2]
    assert merged.meta["dist"]["world_size"] == 3  # rank0's metadata is kept
    assert merged.meta["merge"]["ranks"][1]["rate"] == RATE


def test_a_rank_that_died_is_aligned_by_its_start_offset_and_named():
    start = SyncPoint(10.0, 12.0, 0.5)  # rank0's clock reads 2 ms more
    own = Recorder()
    own.span("build", "stage0", "compute", Tag(0, 0, 0), 1.0, 2.0)
    streamed = [("span", "denoise", "stage1", "compute", 0, 0, 0, 0, 0, 5.0, 6.0, math.nan)]
    records = {1: RankRecord(1, (start,), complete=False),
               2: RankRecord(2, (start,), complete=False)}
    merged = merged_trace(own.trace({"source": "exec"}), records, {1: streamed},
                          {3: "rank3 posted no end-of-run record"}, MESH4)
    sp = merged.spans.sort_values("start_ms")
    assert list(zip(sp["stage"], sp["start_ms"], sp["end_ms"], strict=True)) == [
        ("stage0", 1.0, 2.0), ("stage1", 7.0, 8.0)]
    meta = merged.meta["dist"]
    assert meta["traced_ranks"] == [0, 1]
    assert meta["untraced"] == {
        "1": "posted no end-of-run record (died?): only the 1 rows it shipped on the link",
        "2": "posted no end-of-run record (died?): none of its rows",
        "3": "rank3 posted no end-of-run record"}
    assert {k: (c["offset_ms"], c["rate"], c["handshakes"], c["complete"])
            for k, c in meta["clock"].items()} == {"1": (2.0, 1.0, 1, False),
                                                   "2": (2.0, 1.0, 1, False)}


def test_followers_keep_only_their_spans_on_their_own_lane():
    rows = [("span", "denoise", "stage1", "compute", 0, 3, 3, 0, 1, 1.0, 2.0, math.nan),
            ("mark", "drop", "stage1", "compute", 0, 2, 2, 0, -1, 2.0, 2.0, math.nan),
            ("counter", "q_out", "stage0", "queue", 0, -1, -1, 0, -1, 2.0, 2.0, 1.0)]
    assert follower_rows(rows, 3) == [
        ("span", "denoise", "stage1", "compute@r3", 0, 3, 3, 0, 1, 1.0, 2.0, rows[0][11])]


class FakeStore:
    """The three TCPStore calls the records use."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def set(self, key: str, value: str) -> None:
        self.data[key] = value.encode()

    def get(self, key: str) -> bytes:
        return self.data[key]

    def check(self, keys: list[str]) -> bool:
        return all(k in self.data for k in keys)


def test_records_travel_in_parts_and_a_rank_that_posted_nothing_is_named(monkeypatch):
    monkeypatch.setattr(gather, "PART_ROWS", 2)
    store = FakeStore()
    start = SyncPoint(1.0, 3.0, 0.5)
    rows = tuple(("span", "denoise", "stage1", "compute", 0, k, k, 0, 0, float(k),
                  k + 0.5, math.nan) for k in range(5))
    post_record(store, RankRecord(1, (start,), rows, 12.5, ((0.0, 20.0),), 2.5, 10.0))
    post_start(store, 2, SyncPoint(2.0, 3.0, 0.25))  # then died
    store.set("trace/3/head", json.dumps({"sync": [[1, 0, 0]], "cpu_ms": "x"}))
    records, missing = read_records(store, [1, 2, 3, 4], wait_s=0.0)
    assert sum(k.startswith("trace/1/rows") for k in store.data) == 3
    one = records[1]
    assert [r[5] for r in one.rows] == [0, 1, 2, 3, 4] and math.isnan(one.rows[0][11])
    assert (one.sync, one.cpu_ms, one.spans, one.wait_ms, one.work_ms, one.complete) == (
        (start,), 12.5, ((0.0, 20.0),), 2.5, 10.0, True)
    assert records[2] == RankRecord(2, (SyncPoint(2.0, 3.0, 0.25),),
                                    complete=False)
    assert missing[3].startswith("bad record")
    assert missing[4] == "rank4 posted no end-of-run record"


def test_each_rank_is_a_device_of_the_parallelism_record_with_exact_shares():
    records = [RankRecord(0, cpu_ms=90.0, spans=((0.0, 50.0), (60.0, 110.0)), work_ms=81.0),
               RankRecord(1, cpu_ms=80.0, spans=((0.0, 100.0),), work_ms=64.0),
               # 40 of its 100 ms in collectives, waiting for a slower peer: not starved
               RankRecord(2, cpu_ms=57.0, spans=((0.0, 60.0), (40.0, 100.0)), wait_ms=40.0)]
    trust, usage = dist_parallelism("cpu", records, (3.0, 2.5), MESH3)
    assert trust["cpu_share"] == {"stage0": 0.9, "stage1": 0.8, "stage1@r2": 0.95}
    assert trust["device_share"] == {"rank0": 0.9, "rank1": 0.8, "rank2": 0.95}
    assert trust["kernel_speed"] == {"stage0": 0.9, "stage1": 0.8}
    assert (trust["devices_needed"], trust["parallel"]) == (3, False)
    assert trust["warnings"] == [
        "device rank1 (stage1) got 80% of a core while computing: the machine is loaded, "
        "the stages could not run as modelled and the measured period is too long",
        "stage1's kernels ran at 80% of their calibrated speed per CPU second: the core is "
        "shared with other work at the hardware level (or its clock dropped); the period is "
        "too long",
        "only 2.50 of 3 cores were free around the run: the stages could not run in parallel"]
    assert usage == {"rank0": {"cpu_ms": 90.0, "wall_ms": 100.0, "collective_ms": 0.0},
                     "rank1": {"cpu_ms": 80.0, "wall_ms": 100.0, "collective_ms": 0.0},
                     "rank2": {"cpu_ms": 57.0, "wall_ms": 100.0, "collective_ms": 40.0}}
    calm, _ = dist_parallelism("cpu", records[:1], (None, None), MESH3)
    assert (calm["parallel"], calm["warnings"]) == (True, [])


def _leader_only(trace: Trace) -> Trace:
    ev = trace.events
    return Trace(ev[~ev["lane"].str.contains("@")].reset_index(drop=True), trace.meta)


def _busy_by_hand(trace: Trace, stage: str, chunks: list[int]) -> float:
    """Median per chunk of the stage's compute-lane span time (no batching here)."""
    sp = trace.spans
    sp = sp[(sp["stage"] == stage) & (sp["lane"] == "compute")]
    per = (sp["end_ms"] - sp["start_ms"]).groupby(sp["chunk"]).sum()
    return float(pd.Series([per.get(k, 0.0) for k in chunks]).median())


def test_a_tensor_parallel_replay_traces_every_rank_once(tmp_path, run_token, dist_cal):
    out = tmp_path / "m.parquet"
    res = runner.invoke(app, ["replay", *FAST, *dist_cal, "--set", "run.chunks=8",
                              "--backend", "dist", "--mesh-size", "2", "--timeout", "10",
                              "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    trace = read_trace(out)
    meta = trace.meta["dist"]
    assert meta["traced_ranks"] == [0, 1, 2] and meta["untraced"] == {}
    for rank in ("1", "2"):
        clock: dict[str, Any] = meta["clock"][rank]
        assert clock["handshakes"] == 2 and clock["complete"]
        assert all(0 < rtt < 1000 for rtt in clock["rtt_ms"])
    sp = trace.spans
    key = ["name", "session", "chunk", "call_id", "epoch", "step"]
    lead = sp[(sp["stage"] == "stage1") & (sp["lane"] == "compute")]
    follow = sp[sp["lane"] == "compute@r2"]
    assert len(lead) > 0 and sorted(lead[key].itertuples(index=False)) == sorted(
        follow[key].itertuples(index=False))
    both = lead.merge(follow, on=key, suffixes=("", "_f"))
    assert len(both) == len(lead)
    # one collective call: each rank's span of it overlaps the other's (aligned clocks)
    assert ((both["start_ms"] < both["end_ms_f"]) & (both["start_ms_f"] < both["end_ms"])).all()
    metrics = compute_metrics(trace)
    assert metrics == compute_metrics(_leader_only(trace))
    window = metrics["window"]
    chunks = list(range(window["first_chunk"], window["last_chunk"] + 1))
    assert metrics["stage1_ms"] == pytest.approx(_busy_by_hand(trace, "stage1", chunks))
    assert len(trace.marks("emit")) == 8
    # the parallelism each rank had, in the threads backend's shape, and its warnings
    trust = trace.meta["parallelism"]
    assert set(trust["device_share"]) == {"rank0", "rank1", "rank2"}
    assert set(trust["cpu_share"]) == {"stage0", "stage1", "stage1@r2"}
    assert trust["devices_needed"] == 3 and set(meta["usage"]) == {"rank0", "rank1", "rank2"}
    assert all(u["cpu_ms"] > 0 and u["wall_ms"] > 0 for u in meta["usage"].values())
    # each call ends in an all-reduce on the mesh ranks (their share leaves its wait out)
    assert meta["usage"]["rank0"]["collective_ms"] == 0.0
    assert all(meta["usage"][r]["collective_ms"] > 0 for r in ("rank1", "rank2"))
    data = json.loads(res.stdout)
    assert data["parallelism"] == trust and data["warnings"] == trust["warnings"]
    assert trust["parallel"] == (not trust["warnings"])
    for warning in trust["warnings"]:
        assert f"warning: {warning}" in " ".join(res.stderr.split())
