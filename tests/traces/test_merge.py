"""Clock handshakes, linear drift correction and `pipefill merge`."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipefill import probe
from pipefill.cli import app
from pipefill.traces.clock import ClockError, SyncPoint, fit_clock, handshake
from pipefill.traces.io import read_trace
from pipefill.traces.merge import merge_ranks
from pipefill.traces.schema import TraceError

runner = CliRunner()


class World:
    """True time in ms; rank r's clock reads offset + rate * true (ns integers)."""

    def __init__(self) -> None:
        self.t = 0.0

    def clock(self, offset_ms: float, rate: float):
        return lambda: round((offset_ms + rate * self.t) * 1e6)

    def ask(self, ref: probe.Recorder, delay_ms: float):
        """The reference read after a one-way delay; the reply takes as long again."""
        def ask_ref() -> float:
            self.t += delay_ms
            value = ref.now_ms()
            self.t += delay_ms
            return value
        return ask_ref


def test_fit_clock_is_the_line_through_first_and_last_points():
    m = fit_clock([SyncPoint(0.0, 5.0, 0.1), SyncPoint(50.0, 55.1, 0.1),
                   SyncPoint(100.0, 105.2, 0.1)])
    assert m.rate == pytest.approx(1.002) and m.offset_ms == pytest.approx(5.0)
    assert m(100.0) == pytest.approx(105.2)
    one = fit_clock([SyncPoint(10.0, 3.0, 0.1)])
    assert (one.offset_ms, one.rate) == (-7.0, 1.0)


def test_clocks_out_of_order_are_an_error():
    with pytest.raises(ClockError, match="clocks out of order"):
        fit_clock([SyncPoint(10.0, 5.0, 0.1), SyncPoint(20.0, 4.0, 0.1)])


def test_handshake_keeps_the_shortest_round_trip():
    delays = iter([5.0, 0.5, 2.0])
    now = [0.0]

    def local() -> float:
        return now[0]

    def ask() -> float:
        d = next(delays)
        now[0] += d
        ref = now[0] + 100.0
        now[0] += d
        return ref

    p = handshake(local, ask, rounds=3)
    assert p.rtt_ms == 1.0 and p.ref_ms - p.local_ms == pytest.approx(100.0)


def two_ranks(offset_ms: float, drift_ppm: float, delay_ms: float = 0.05, born_ms: float = 0.0):
    """Rank 0 and rank 1 (skewed clock, recorder made ``born_ms`` after rank 0's) record
    the same true instants 10, 20, ..., 100 ms."""
    w = World()
    r0 = probe.Recorder(policy={"name": "phase_pp"}, rank=0, clock=w.clock(0.0, 1.0))
    w.t = born_ms
    r1 = probe.Recorder(rank=1, clock=w.clock(offset_ms, 1.0 + drift_ppm * 1e-6))
    w.t = 1.0
    w.t = max(w.t, 1.0)
    r1.sync(w.ask(r0, delay_ms), rounds=3)
    for k in range(10):
        w.t = 10.0 + 10.0 * k
        r0.stage("stage0").mark("emit", chunk=k)
        r1.stage("stage1").mark("emit", chunk=k, session=1)
    w.t = 200.0
    r1.sync(w.ask(r0, delay_ms), rounds=3)
    return r0, r1


@settings(max_examples=15, deadline=None, derandomize=True)
@given(offset=st.floats(-5e4, 5e4), ppm=st.floats(-200, 200), born=st.floats(0, 9))
def test_merge_puts_every_rank_on_rank0s_clock(offset, ppm, born):
    r0, r1 = two_ranks(offset, ppm, born_ms=born)
    merged = merge_ranks([r1.trace(), r0.trace()], ["r1", "r0"])
    ev = merged.events
    t0 = ev[ev["stage"] == "stage0"]["start_ms"].to_numpy()
    t1 = ev[ev["stage"] == "stage1"]["start_ms"].to_numpy()
    # symmetric delays: the handshake is exact up to float rounding of ns clocks
    assert abs(t1 - t0).max() < 1e-5
    info = {r["rank"]: r for r in merged.meta["merge"]["ranks"]}
    assert info[1]["rate"] == pytest.approx(1 / (1 + ppm * 1e-6), rel=1e-7)
    assert merged.meta["policy"] == {"name": "phase_pp"} and ev["start_ms"].min() >= 0


def test_merge_without_drift_correction_would_be_off():
    """The end handshake matters: with 500 ppm drift, offset-only alignment is off by
    ~0.1 ms at 200 ms, the linear fit is exact."""
    r0, r1 = two_ranks(30.0, 500.0)
    t1 = r1.trace()
    start_only = {**t1.meta, "probe": {**t1.meta["probe"], "sync": t1.meta["probe"]["sync"][:1]}}
    one = merge_ranks([r0.trace(), type(t1)(t1.events, start_only)])
    two = merge_ranks([r0.trace(), t1])
    gap = lambda m: (m.events[m.events.stage == "stage1"]["start_ms"].to_numpy()  # noqa: E731
                     - m.events[m.events.stage == "stage0"]["start_ms"].to_numpy())
    assert abs(gap(two)).max() < 1e-5 and abs(gap(one)).max() > 0.04


def test_merge_rejects_bad_rank_sets():
    r0, r1 = two_ranks(3.0, 0.0)
    with pytest.raises(TraceError, match="rank 0 appears twice"):
        merge_ranks([r0.trace(), r0.trace()], ["a", "b"])
    bare = probe.Recorder(rank=1)
    with pytest.raises(TraceError, match="rank 1 has no clock handshake"):
        merge_ranks([r0.trace(), bare.trace()])
    t = r1.trace()
    t.meta["probe"]["sync"] = list(reversed(t.meta["probe"]["sync"]))
    with pytest.raises(TraceError, match="clocks out of order"):
        merge_ranks([r0.trace(), t])


def test_merge_rejects_overlapping_spans_of_one_stage():
    w = World()
    r0 = probe.Recorder(rank=0, clock=w.clock(0.0, 1.0))
    r1 = probe.Recorder(rank=1, clock=w.clock(0.0, 1.0))
    r1.sync(w.ask(r0, 0.0), rounds=1)
    for rec, (a, b) in ((r0, (5.0, 9.0)), (r1, (6.0, 10.0))):  # both ranks claim stage1
        w.t = a
        span = rec.stage("stage1").span("denoise", chunk=0)
        span.__enter__()
        w.t = b
        span.__exit__(None, None, None)
    with pytest.raises(TraceError, match="overlapping spans on stage1/compute"):
        merge_ranks([r0.trace(), r1.trace()])


def test_merge_cli(tmp_path):
    r0, r1 = two_ranks(1e6, 50.0, born_ms=7.5)
    paths = [r0.save(tmp_path / "rank0.parquet"), r1.save(tmp_path / "rank1.parquet")]
    out = tmp_path / "merged.parquet"
    res = runner.invoke(app, ["merge", *map(str, paths), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["events"] == 20 and [r["rank"] for r in data["ranks"]] == [0, 1]
    tr = read_trace(out)
    assert sorted(tr.events["stage"].unique()) == ["stage0", "stage1"]
    res = runner.invoke(app, ["merge", *map(str, paths), "--out", str(out)])
    assert res.exit_code == 0
    assert "rank 1 (rank1.parquet): offset +7.500 ms, drift -50.0 ppm" in res.stdout


def test_merge_cli_bad_input_is_one_line_and_no_file(tmp_path):
    r0, _ = two_ranks(1.0, 0.0)
    p = r0.save(tmp_path / "rank0.parquet")
    out = tmp_path / "merged.parquet"
    res = runner.invoke(app, ["merge", str(p), str(p), "--out", str(out)])
    assert res.exit_code == 2 and not out.exists()
    assert res.stderr.strip().splitlines() == [
        "error: meta.probe.rank: rank 0 appears twice (rank0.parquet, rank0.parquet)"]
