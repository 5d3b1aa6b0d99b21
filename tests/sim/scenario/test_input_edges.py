"""Metric and input edge cases a new user hit (issue 13, item 8): no steady-state window,
NaN times, hard cuts past the run, a rolling window too small for a chunk."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.sim.engine.core import simulate
from pipefill.sim.policies.rolling_window import RollingWindow
from pipefill.sim.scenario.load import ScenarioError, load_scenario
from pipefill.traces.io import write_trace
from pipefill.traces.metrics import compute_metrics
from pipefill.traces.schema import TraceError, validate

runner = CliRunner()


def test_fewer_chunks_than_the_warm_up_is_refused():
    # issue 22: every metric would be missing, which the exit-code rules make a 2
    res = runner.invoke(app, ["simulate", "--set", "run.chunks=5"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr == ("error: run.warmup: 10 leaves no steady-state window in a run of 5 "
                          "chunks (it must be below run.chunks: --set run.warmup=N)\n")


def test_a_trace_too_short_for_the_warm_up_says_there_is_no_window():
    m = compute_metrics(simulate(load_scenario(None, ["run.chunks=5", "run.warmup=1"])),
                        warmup=10)
    assert m["period_ms"] is None
    # 5 chunks, 2 of them in flight when the last input entered (the cool-down)
    assert m["missing"]["period_ms"] == ("no steady-state window: 3 chunks emitted before "
                                         "the cool-down, need more than 10 (warm-up 10)")


@pytest.mark.parametrize("col", ["start_ms", "end_ms"])
def test_a_nan_time_names_its_column_and_row(col):
    events = simulate(load_scenario(None, ["run.chunks=3", "run.warmup=1"])).events.copy()
    events.loc[4, col] = np.nan
    events.loc[7, col] = np.nan
    row = events.iloc[4]
    with pytest.raises(TraceError) as err:
        validate(events)
    assert str(err.value) == (
        f"{col}: 2 row(s) with no finite time (NaN, empty or infinite), first at data row 5 "
        f"({row['kind']} {row['name']} chunk {row['chunk']})")


def test_a_nan_start_in_a_csv_is_exit_2_naming_the_column(tmp_path):
    trace = simulate(load_scenario(None, ["run.chunks=3", "run.warmup=1"]))
    trace.events.loc[0, "start_ms"] = np.nan
    path = tmp_path / "t.csv"
    write_trace(trace, path)
    res = runner.invoke(app, ["diff", str(path), str(path)])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: start_ms: 1 row(s) with no finite time")


@pytest.mark.parametrize("policy", ["phase_pp", "serial", "rolling_window"])
def test_a_hard_cut_beyond_the_last_chunk_is_refused(policy):
    with pytest.raises(ScenarioError) as err:
        load_scenario(None, [f"policy.name={policy}", "run.chunks=10", "run.warmup=2",
                            "policy.hard_cuts=[4, 10]"])
    assert str(err.value) == ("policy.hard_cuts: chunk 10 is beyond the run's last chunk 9 "
                              "(run.chunks = 10)")
    # the last chunk itself is a valid cut
    load_scenario(None, [f"policy.name={policy}", "run.chunks=10", "run.warmup=2",
                         "policy.hard_cuts=[9]"])


def test_a_window_too_small_for_one_chunk_is_refused():
    base = ["policy.name=rolling_window", "transport.result_bytes=1000"]
    with pytest.raises(ScenarioError) as err:
        load_scenario(None, [*base, "policy.window_bytes=999"])
    assert str(err.value) == ("policy.window_bytes: 999 bytes cannot hold one chunk (its "
                              "result is 1000 bytes; transport.result_*)")
    policy = load_scenario(None, [*base, "policy.window_bytes=1000"]).policy
    assert isinstance(policy, RollingWindow) and policy.window_bytes == 1000
