"""What a new user tripped over in issue 22: commands that overwrote their own input,
inputs accepted silently, misleading notes, a traceback, and discovery (--help order,
sweeps across policies whose fields differ)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipefill import probe
from pipefill.cli import app
from pipefill.sim.engine.core import simulate
from pipefill.sim.scenario.load import load_scenario
from pipefill.traces.io import read_table, write_table, write_trace
from pipefill.traces.metrics import UNIT_TOLERANCE, clamp_unit, overlap_window

runner = CliRunner()
SMALL = ["--set", "run.chunks=14", "--set", "run.warmup=2"]


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("guards") / "pred.parquet"
    write_trace(simulate(load_scenario(None, ["run.chunks=14", "run.warmup=2"])), path)
    return path


def _one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


# -- 1. data loss --------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["calibrate", "{t}", "--out", "{t}"],
    ["merge", "{t}", "--out", "{t}"],
    ["merge", "{t}", "--out", "{d}/./pred.parquet"],  # the same file by another name
    ["export", "{t}", "--out", "{t}"],
])
def test_a_command_never_overwrites_its_input(tmp_path, trace_file, args):
    t = tmp_path / "pred.parquet"
    t.write_bytes(trace_file.read_bytes())
    before = t.read_bytes()
    res = runner.invoke(app, [a.format(t=t, d=tmp_path) for a in args])
    line = _one_error_line(res)
    assert line.startswith("error: --out: ")
    assert "input" in line or "extension" in line
    assert t.read_bytes() == before  # byte-identical


def test_the_refusal_names_the_input(tmp_path, trace_file):
    t = tmp_path / "pred.parquet"
    t.write_bytes(trace_file.read_bytes())
    res = runner.invoke(app, ["merge", str(t), "--out", str(t)])
    assert _one_error_line(res) == (f"error: --out: {t} is also an input ({t}); writing it "
                                    "would overwrite it: choose another path")


def test_calibrate_writes_toml_only(tmp_path, trace_file):
    res = runner.invoke(app, ["calibrate", str(trace_file), "--out", str(tmp_path / "c.parquet")])
    assert _one_error_line(res) == "error: --out: c.parquet: unknown extension (use .toml)"
    assert not (tmp_path / "c.parquet").exists()


def test_a_report_directory_holding_an_input_is_not_replaced(tmp_path, trace_file):
    out = tmp_path / "report"
    assert runner.invoke(app, ["report", str(trace_file), "--out", str(out)]).exit_code == 0
    inside = out / "pred.parquet"
    inside.write_bytes(trace_file.read_bytes())
    res = runner.invoke(app, ["report", str(inside), "--out", str(out)])
    assert _one_error_line(res) == (f"error: --out: {out} holds an input ({inside}) and "
                                    "would be replaced: choose another directory")
    assert inside.read_bytes() == trace_file.read_bytes()


# -- 3. report of a sweep table without peak_bytes_in_flight -------------------------------

def test_report_of_a_sweep_without_memory_columns(tmp_path):
    table = tmp_path / "sweep.parquet"
    assert runner.invoke(app, ["sweep", *SMALL, "--grid", "policy.d_in=1,2", "--out",
                               str(table)]).exit_code == 0
    df, meta = read_table(table)
    write_table(df.drop(columns=["peak_bytes_in_flight"]), table, meta)
    res = runner.invoke(app, ["report", str(table), "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0, res.output
    assert "pareto.png" in json.loads(res.stdout)["figures"]


# -- 4. silent acceptance ------------------------------------------------------------------

def test_a_negative_hard_cut_is_refused():
    res = runner.invoke(app, ["simulate", *SMALL, "--set", "policy.hard_cuts=[3, -1]"])
    assert _one_error_line(res) == ("error: policy.hard_cuts: chunk -1 is not a chunk (chunks "
                                    "count from 0)")


@pytest.mark.parametrize("cmd", ["simulate", "bound"])
def test_a_warm_up_as_long_as_the_run_is_refused(cmd):
    res = runner.invoke(app, [cmd, "--set", "run.chunks=8", "--set", "run.warmup=8"])
    assert _one_error_line(res) == ("error: run.warmup: 8 leaves no steady-state window in a "
                                    "run of 8 chunks (it must be below run.chunks: --set "
                                    "run.warmup=N)")
    res = runner.invoke(app, [cmd, "--set", "run.chunks=1", "--set", "run.warmup=0"])
    assert _one_error_line(res) == ("error: run.chunks: 1 chunk has no steady-state window (a "
                                    "period is the gap between two emits: give at least 2)")


def test_a_sweep_point_without_a_window_is_refused():
    res = runner.invoke(app, ["sweep", "--set", "run.warmup=5", "--grid", "run.chunks=4,20"])
    assert _one_error_line(res).startswith("error: run.warmup: 5 leaves no steady-state window")


def _rank_file(path, rank: int) -> None:
    rec = probe.Recorder(rank=rank)
    s = rec.stage("stage0")
    if rank:
        rec.sync(lambda: 100.0 + rec.now_ms())
    with s.span("build", chunk=0):
        pass
    s.mark("emit", chunk=0)
    rec.save(path)


def test_merge_without_rank_0_is_refused(tmp_path):
    _rank_file(tmp_path / "r1.parquet", 1)
    res = runner.invoke(app, ["merge", str(tmp_path / "r1.parquet"), "--out",
                              str(tmp_path / "m.parquet")])
    assert _one_error_line(res) == (
        "error: ranks: no rank 0 file among rank 1 (r1.parquet): rank 0's clock is the one "
        "every rank is aligned to, and its events are part of the run; pass its file too")
    assert not (tmp_path / "m.parquet").exists()


def test_a_fit_from_a_single_span_is_flagged(tmp_path):
    rec = probe.Recorder(policy={"name": "serial"}, run={"chunks": 3, "warmup": 1})
    s0, s1 = rec.stage("stage0"), rec.stage("stage1")
    for k in range(3):
        s0.mark("input", chunk=k)
        for stage, phase in ((s0, "build"), (s1, "denoise"), (s0, "decode")):
            if phase != "decode" or k == 2:  # decode: one span only
                with stage.span(phase, chunk=k):
                    sum(range(1000))
        s0.mark("emit", chunk=k)
    rec.save(tmp_path / "one.parquet")
    out = tmp_path / "one.toml"
    res = runner.invoke(app, ["calibrate", str(tmp_path / "one.parquet"), "--out", str(out),
                              "--json"])
    assert res.exit_code == 0, res.output
    flag = ("costs.decode: fitted from only 1 span (fewer than 3): its spread and shape are "
            "guesses; record more chunks")
    assert json.loads(res.stdout)["warnings"] == [flag]
    assert res.stderr == f"warning: {flag}\n"
    assert f"# WARNING {flag}" in out.read_text()


@pytest.mark.parametrize(("path", "why"), [
    ("run.txt", "run.txt: unknown extension (use .parquet or .pq or .csv)"),
    ("{file}/run.parquet", "is a file, not a directory"),
])
def test_probe_paths_are_checked_when_the_recorder_is_made(tmp_path, path, why):
    (tmp_path / "file").write_text("x")
    target = path.format(file=tmp_path / "file")
    with pytest.raises(probe.ProbeEnvError, match=r"^PIPEFILL_PROBE: ") as err:
        probe.from_env({"PIPEFILL_PROBE": str(tmp_path / target)}, save_at_exit=False)
    assert why in str(err.value)


def test_a_missing_spill_directory_is_refused_at_once(tmp_path):
    with pytest.raises(ValueError, match=r"^spill_dir: .* is not a directory$"):
        probe.Recorder(spill_dir=str(tmp_path / "nowhere"))


# -- 5. misleading output ------------------------------------------------------------------

def test_overlap_above_one_on_plain_phase_pp_is_called_cost_noise():
    res = runner.invoke(app, ["simulate", "--set", "run.chunks=40", "--json"])
    m = json.loads(res.stdout)
    assert 1.0 < m["overlap_score"] < 1.05  # the 1.007
    note = m["notes"]["overlap_score"]
    assert note.startswith("1.01 > 1 from cost noise: the stages overlap fully")
    assert "batched" not in note


def test_shares_within_rounding_of_one_are_one():
    assert clamp_unit(1.0 + 2.2e-16) == 1.0 and clamp_unit(1.0 + UNIT_TOLERANCE) == 1.0
    assert clamp_unit(1.01) == 1.01 and clamp_unit(0.5) == 0.5
    busy, span = {"stage0": 0.1 + 0.2, "stage1": 0.3}, 0.3  # a full overlap in floats
    assert (busy["stage0"] + busy["stage1"] - span) / (busy["stage0"] + busy["stage1"]
                                                        - max(busy.values())) > 1.0
    assert overlap_window(busy, span) == (1.0, "")


def test_switching_to_serial_keeps_recompute_and_says_what_changed():
    res = runner.invoke(app, ["bound", "--policy", "serial", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["policy"]["recompute"] == "r0a"  # like for like
    assert res.stderr == ("note: policy phase_pp -> serial; kept recompute = r0a; serial has "
                          "no d_in, d_out, stage0_order, recompute_lag, anchor\n")
    res = runner.invoke(app, ["simulate", *SMALL, "--policy", "multi_session", "--json"])
    assert res.exit_code == 0, res.output  # r0a is not a multi_session value: not kept
    assert json.loads(res.stdout)["policy"]["recompute"] == "r1"
    assert "recompute = r0a not kept (multi_session does not allow it" in res.stderr


def test_serial_simulated_matches_the_bounds_serial_period():
    # the issue: 205.7 ms simulated (r1) against the bound's 252.2 ms (r0a)
    serial = json.loads(runner.invoke(app, ["simulate", "--policy", "serial", "--json"]).stdout)
    bound = json.loads(runner.invoke(app, ["bound", "--json"]).stdout)
    assert serial["period_ms"] == pytest.approx(bound["serial_ms"], rel=0.01)


# -- 7. discovery --------------------------------------------------------------------------

def test_help_lists_commands_in_workflow_order():
    res = runner.invoke(app, ["--help"])
    names = [ln.split()[1] for ln in res.stdout.splitlines()
             if ln.startswith("│ ") and len(ln.split()) > 2 and ln.split()[1].isalpha()
             and ln.split()[1] not in ("Show", "Print")]
    order = ["simulate", "sweep", "bound", "replay", "diff", "calibrate", "report", "export",
             "merge", "import"]
    assert [n for n in names if n in order] == order


def test_a_sweep_compares_policies_whose_fields_differ(tmp_path):
    out = tmp_path / "s.parquet"
    res = runner.invoke(app, ["sweep", *SMALL, "--grid", "policy.name=serial,phase_pp",
                              "--grid", "policy.d_in=1,2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("│")]
    assert [r.split("│")[1:3] for r in rows] == [
        ["   serial ", "  n/a "], [" phase_pp ", "    1 "], [" phase_pp ", "    2 "]]
    assert ("n/a: policy.d_in is not a field of that point's policy (the axis is ignored "
            "there)") in res.stdout
    table = pd.read_parquet(out)
    assert table["policy.name"].tolist() == ["serial", "phase_pp", "phase_pp"]
    assert np.isnan(table["policy.d_in"][0]) and table["policy.d_in"][1:].tolist() == [1, 2]
    assert table["error"].isna().all()
    rep = runner.invoke(app, ["report", str(out), "--out", str(tmp_path / "r")])
    assert rep.exit_code == 0, rep.output


def test_a_policy_field_no_policy_of_the_axis_has_still_fails():
    res = runner.invoke(app, ["sweep", *SMALL, "--grid", "policy.name=serial,layer_pp",
                              "--grid", "policy.d_in=1,2"])
    assert _one_error_line(res).startswith("error: policy.d_in: not a field of serial")
