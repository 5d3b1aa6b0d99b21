"""What a new user tripped over (issue 13): unwritable --out, repeated grid axes,
--policy, exit codes for scripts, flags, --version/-h, Ctrl-C."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.traces.io import read_table

runner = CliRunner()
SMALL = ["--set", "run.chunks=14", "--set", "run.warmup=2"]


@pytest.fixture
def blocked(tmp_path):
    """An --out whose parent is a file (FileExistsError before; works as root too)."""
    (tmp_path / "file").write_text("x")
    return tmp_path / "file"


@pytest.mark.parametrize(("args", "name"), [
    (["simulate", *SMALL], "t.parquet"),
    (["sweep", *SMALL, "--grid", "policy.d_in=1,2"], "t.parquet"),
    (["export", "MISSING.parquet"], "t.json"),
    (["calibrate", "MISSING.parquet"], "s.toml"),
    (["replay", *SMALL], "t.parquet"),
    (["merge", "MISSING.parquet"], "t.parquet"),
    (["import", "MISSING.json", "--map", "MISSING.toml"], "t.parquet"),
])
def test_unwritable_out_is_one_line_naming_out_and_exit_2(blocked, args, name):
    out = blocked / "sub" / name
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [
        f"error: --out: {out}: {blocked} is a file, not a directory"]
    assert res.stdout == ""  # checked before any work (calibrate/export: before reading)


def test_out_that_is_a_directory_is_refused(tmp_path):
    res = runner.invoke(app, ["simulate", *SMALL, "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: --out: {tmp_path} is a directory"


def test_unknown_out_extension_is_refused_before_running(tmp_path):
    res = runner.invoke(app, ["sweep", *SMALL, "--grid", "policy.d_in=1,2",
                              "--out", str(tmp_path / "t.txt")])
    assert res.exit_code == 2 and res.stderr.startswith("error: --out: t.txt: unknown extension")


def test_a_repeated_grid_axis_is_refused(tmp_path):
    out = tmp_path / "sw.csv"
    res = runner.invoke(app, ["sweep", *SMALL, "--grid", "policy.d_in=1,2",
                              "--grid", "policy.d_in=3", "--out", str(out)])
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: --grid: policy.d_in is given twice: put all its "
                                  "values in one --grid (policy.d_in=v1,v2,...)")
    assert not out.exists()


def test_policy_option_switches_policy_with_its_defaults():
    res = runner.invoke(app, ["simulate", *SMALL, "--policy", "layer_pp", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["policy"] == {
        "name": "layer_pp", "stages": 2, "items": 4, "blocks": 30, "split": None,
        "activation_bytes": None}
    res = runner.invoke(app, ["bound", "--policy", "serial", "--set", "policy.d_in=3"])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: policy.d_in: not a field of serial")


def test_policy_option_in_a_sweep_applies_to_every_point():
    res = runner.invoke(app, ["sweep", *SMALL, "--policy", "layer_pp",
                              "--grid", "policy.items=2,4", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["policy.items"] for r in json.loads(res.stdout)] == [2, 4]


def test_sweep_best_exits_1_when_no_point_qualifies():
    args = ["sweep", *SMALL, "--grid", "policy.d_in=1,2", "--best"]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, [*args, "--min-fps", "100000"])
    assert res.exit_code == 1 and "best: no grid point meets fps >= 100000" in res.stdout
    res = runner.invoke(app, [*args, "--min-fps", "100000", "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["best"] is None


def test_diff_check_exits_1_when_the_runs_differ(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert runner.invoke(app, ["simulate", *SMALL, "--out", str(a)]).exit_code == 0
    assert runner.invoke(app, ["simulate", *SMALL, "--set", "costs.denoise.mean=90",
                               "--out", str(b)]).exit_code == 0
    same = runner.invoke(app, ["diff", str(a), str(a), "--check"])
    assert same.exit_code == 0 and "agree:" in same.stdout
    differ = runner.invoke(app, ["diff", str(a), str(b), "--check", "--json"])
    assert differ.exit_code == 1 and json.loads(differ.stdout)["status"] == "differ"
    assert runner.invoke(app, ["diff", str(a), str(b)]).exit_code == 0  # documented


def test_json_is_a_plain_flag_and_help_does_not_show_a_value():
    res = runner.invoke(app, ["bound", "--json", "true"])
    assert res.exit_code == 2 and "scenario: true: cannot read" in res.stderr
    help_text = runner.invoke(app, ["simulate", "-h"]).stdout
    line = next(ln for ln in help_text.splitlines() if "--json" in ln)
    assert "<bool>" not in line and "Print one JSON object" in line


def test_version_and_short_help():
    from importlib.metadata import version

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"pipefill {version('pipefill')}"
    res = runner.invoke(app, ["-h"])
    assert res.exit_code == 0 and "simulate" in res.stdout and "--version" in res.stdout


def _interrupt(*_args, **_kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_on_simulate_says_interrupted(monkeypatch):
    import pipefill.sim.engine.choice as engines

    monkeypatch.setattr(engines, "run", _interrupt)  # whichever engine runs it
    res = runner.invoke(app, ["simulate", *SMALL])
    assert res.exit_code == 130 and res.stderr.strip() == "interrupted"


def test_ctrl_c_on_replicas_says_interrupted(monkeypatch):
    import pipefill.sim.sweep.replicas as replicas

    monkeypatch.setattr(replicas, "run_replicas", _interrupt)
    res = runner.invoke(app, ["simulate", *SMALL, "--replicas", "3"])
    assert res.exit_code == 130 and res.stderr.strip() == "interrupted"


def test_ctrl_c_on_a_sweep_keeps_the_finished_points(monkeypatch, tmp_path):
    import pipefill.sim.sweep.grid as sweep

    calls = {"n": 0}
    real = sweep.metrics_batch  # one call per task, one point per task here

    def third_interrupts(scs, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(scs, *args, **kwargs)

    monkeypatch.setattr(sweep, "metrics_batch", third_interrupts)
    out = tmp_path / "sw.csv"
    res = runner.invoke(app, ["sweep", *SMALL, "--grid", "policy.d_in=1,2,3,4",
                              "--out", str(out)])
    assert res.exit_code == 130
    assert res.stderr.strip() == (f"interrupted: 2 of 4 points finished, kept in {out} "
                                  "(--resume runs the rest)")
    table, meta = read_table(out)
    assert table["policy.d_in"].tolist() == [1, 2] and meta["interrupted"] is True
    calls["n"] = 0
    res = runner.invoke(app, ["sweep", *SMALL, "--grid", "policy.d_in=1,2,3,4"])
    assert res.stderr.strip() == "interrupted: 2 of 4 points finished, nothing written (no --out)"
