"""CliRunner tests of shared devices: simulate/bound with [placement], calibrate probes."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.sim.scenario.load import load_scenario

runner = CliRunner()
SHARED = ["--set", 'placement.stage0="g"', "--set", 'placement.stage1="g"',
          "--set", "run.chunks=30"]


def test_bound_reports_the_contention_range() -> None:
    res = runner.invoke(app, ["bound", *SHARED, "--set", "devices.g.rate={2=0.6}", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    rng = data["contention"]
    assert data["kind"] == "lower_bound" and data["period_ms"] == rng["lower_ms"]
    assert rng["lower_ms"] < rng["upper_ms"] and rng["devices"]["g"]["slowest_rate"] == 0.6
    plain = json.loads(runner.invoke(app, ["bound", "--json"]).stdout)
    assert plain["contention"] is None


@pytest.mark.parametrize(("sets", "message"), [
    (["--set", 'placement.stage5="g"'], "error: placement.stage5: unknown stage"),
    ([*SHARED, "--set", "devices.g.rate={2=1.2}"], "error: devices.g.rate: rate[2] must be"),
])
def test_bad_placement_exits_2_naming_the_field(tmp_path: Path, sets: list[str],
                                                message: str) -> None:
    out = tmp_path / "t.parquet"
    res = runner.invoke(app, ["simulate", *sets, "--out", str(out)])
    assert res.exit_code == 2 and res.stderr.startswith(message), res.output
    assert not out.exists()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no thread affinity")
def test_calibrate_probes_shared_devices(tmp_path: Path) -> None:
    trace, out = tmp_path / "t.parquet", tmp_path / "c.toml"
    assert runner.invoke(app, ["simulate", *SHARED, "--out", str(trace)]).exit_code == 0
    res = runner.invoke(app, ["calibrate", str(trace), "--out", str(out), "--probe-contention",
                              "--json"])
    assert res.exit_code == 0, res.output
    rate = json.loads(res.stdout)["rates"]["g"]["2"]
    assert 0.2 <= rate <= 1.0  # one core shared by two loops: about 0.5 when quiet
    text = out.read_text()
    assert "(probed: 5 rounds per level" in text and "used instead of a fit" in text
    assert tomllib.loads(text)["devices"]["g"]["rate"]["2"] == rate
    assert load_scenario(out).placement.spec("g").rate_at(2) == rate  # reads back


def test_probe_without_a_shared_device_exits_2(tmp_path: Path) -> None:
    trace, out = tmp_path / "t.parquet", tmp_path / "c.toml"
    assert runner.invoke(app, ["simulate", "--set", "run.chunks=20", "--out",
                               str(trace)]).exit_code == 0
    res = runner.invoke(app, ["calibrate", str(trace), "--out", str(out),
                              "--probe-contention"])
    assert res.exit_code == 2 and "--probe-contention: the trace's scenario has no shared" \
        in res.stderr
    assert not out.exists()
