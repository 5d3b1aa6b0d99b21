"""CliRunner tests of `simulate` and `sweep`: output, files, exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.traces.io import read_table, read_trace

runner = CliRunner()
SMALL = ["--set", "run.chunks=30"]


def _row(stdout: str, key: str) -> list[str]:
    """The cells of the summary row named ``key``."""
    line = next(ln for ln in stdout.splitlines() if ln.strip("│ ").startswith(key + " "))
    return [c.strip() for c in line.strip().strip("│").split("│")]


def test_simulate_prints_a_summary():
    res = runner.invoke(app, ["simulate", *SMALL])
    data = json.loads(runner.invoke(app, ["simulate", *SMALL, "--json"]).stdout)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].startswith("default: phase_pp(d_in=2, d_out=2, ")
    assert _row(res.stdout, "period_ms")[1] == f"{data['period_ms']:,.1f}"
    assert _row(res.stdout, "overlap_score")[1] == f"{data['overlap_score']:,.3f}"
    periods = data["window"]["periods"]
    # the window ends before the cool-down: the 2 chunks in flight at the last input
    assert data["window"]["cooldown"] == 2 and data["window"]["last_chunk"] == 27
    window = _row(res.stdout, "window")
    assert window[1] == "30"
    assert window[2].startswith(f"chunks 10..27, {periods} periods after warm-up 10")
    assert _row(res.stdout, "period_ci_ms")[1] == f"{data['period_ci_ms']:,.3f}"
    assert data["chunks_run"] == 30 and data["warmup_used"] == 10 and data["converged"] is None


def test_simulate_json_has_the_documented_keys(tmp_path):
    out = tmp_path / "t.parquet"
    res = runner.invoke(app, ["simulate", *SMALL, "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    for key in ("period_ms", "fps", "stage0_ms", "stage1_ms", "overlap_score", "ttff_ms",
                "latency_p50_ms", "latency_p95_ms", "bubble", "q_in_max", "q_out_max",
                "chunks", "warmup"):
        assert key in data
    assert data["chunks"] == 30 and set(data["bubble"]) == {"stage0", "stage1"}
    trace = read_trace(out)
    assert len(trace.marks("emit")) == 30 and trace.meta["scenario_name"] == "default"


def test_simulate_reads_a_scenario_file(tmp_path):
    sc = tmp_path / "s.toml"
    sc.write_text('[run]\nchunks = 12\nwarmup = 2\n[policy]\nname = "serial"\n'
                  "[costs]\nbuild = 1\ndenoise = 10\ndecode = 5\n"
                  "[transport]\nlatency_ms = 0\nenvelope_bytes = 0\nresult_bytes = 0\n")
    res = runner.invoke(app, ["simulate", str(sc), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["period_ms"] == 16.0


def test_bad_input_exits_2_with_one_line_and_no_file(tmp_path):
    out = tmp_path / "t.parquet"
    res = runner.invoke(app, ["simulate", "--set", "policy.d_in=0", "--out", str(out)])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "error: policy.d_in: Input should be greater than or equal to 1 (got 0)"]
    assert not out.exists()
    res = runner.invoke(app, ["simulate", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2 and "scenario:" in res.stderr


def test_sweep_writes_one_row_per_point(tmp_path):
    out = tmp_path / "sw.csv"
    res = runner.invoke(app, ["sweep", *SMALL, "--grid", "policy.d_in=1,2",
                              "--grid", "policy.d_out=1,2,3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    table, meta = read_table(out)
    assert len(table) == 6 and meta["kind"] == "sweep"
    assert table[["policy.d_in", "policy.d_out"]].values.tolist() == [
        [1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]
    assert table["period_ms"].notna().all()


def test_sweep_with_workers_matches_serial_run():
    args = ["sweep", *SMALL, "--grid", "policy.recompute_lag=0,1", "--json"]
    one = runner.invoke(app, args)
    two = runner.invoke(app, [*args, "--workers", "2"])
    assert one.exit_code == two.exit_code == 0
    assert json.loads(one.stdout) == json.loads(two.stdout)
    rows = json.loads(one.stdout)
    assert rows[0]["period_ms"] > rows[1]["period_ms"]  # lag 0 couples decode in


def test_sweep_bad_axis_exits_2_without_output(tmp_path):
    out = tmp_path / "sw.parquet"
    res = runner.invoke(app, ["sweep", "--grid", "policy.d_in=1,0", "--out", str(out)])
    assert res.exit_code == 2 and "policy.d_in" in res.stderr
    assert not out.exists()
    res = runner.invoke(app, ["sweep", "--grid", "policy.d_in"])
    assert res.exit_code == 2 and "--grid" in res.stderr


def test_report_takes_the_bound_from_a_simulated_trace(tmp_path):
    from pipefill.sim.bound.analysis import compute_bound
    from pipefill.sim.bound.trace import bound_of_simulated
    from pipefill.sim.scenario.load import load_scenario

    trace, table = tmp_path / "t.parquet", tmp_path / "sw.parquet"
    assert runner.invoke(app, ["simulate", *SMALL, "--out", str(trace)]).exit_code == 0
    assert runner.invoke(app, ["sweep", *SMALL, "--grid", "policy.d_in=1,2",
                               "--out", str(table)]).exit_code == 0
    expected = compute_bound(load_scenario(None, ["run.chunks=30"])).period_ms
    assert bound_of_simulated([trace]) == expected
    assert bound_of_simulated([table]) is None


@pytest.mark.parametrize("command", ["", "simulate", "sweep", "bound", "replay", "calibrate",
                                     "report", "diff", "export", "merge", "import"])
def test_help_shows_no_value_placeholder_for_a_flag(command):
    res = runner.invoke(app, [*command.split(), "--help"])
    assert res.exit_code == 0 and "--help" in res.output
    assert "<bool>" not in res.output and "--no-" not in res.output
