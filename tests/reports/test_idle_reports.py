"""Idle causes in reports and diffs: the report's stacked bars, diff's differences."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.reports.idle import idle_data
from pipefill.reports.inputs import Run
from pipefill.sim.engine.core import simulate
from pipefill.sim.fit.facts import facts_of
from pipefill.traces.idle_diff import idle_difference
from pipefill.traces.io import write_trace
from pipefill.traces.schema import Trace
from pipefill.traces.waits import CAUSES
from tests.traces.test_explain import _scenario

runner = CliRunner()


def test_the_report_bars_tile_each_stage_window_and_carry_the_verdict():
    trace = simulate(_scenario("backpressure"))
    (panel,) = idle_data([Run(Path("t.parquet"), trace, "predicted")], facts_of)
    assert panel.stages == ["stage0", "stage1"] and list(panel.shares) == ["busy", *CAUSES]
    for i in range(2):
        assert abs(sum(v[i] for v in panel.shares.values()) - 1.0) < 1e-9
    assert panel.verdict.startswith("backpressure") and panel.lever.startswith("D_out = 2")
    ev = trace.events
    (bare,) = idle_data([Run(Path("x"), Trace(ev[ev["name"] != "emit"], {}), "measured")])
    assert "no emit" in bare.reason and not bare.stages


def test_report_command_draws_the_idle_figure(tmp_path):
    path = write_trace(simulate(_scenario("dependency")), tmp_path / "t.parquet")
    res = runner.invoke(app, ["report", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "idle_causes.png").stat().st_size > 1000
    assert "Why stages idle" in (tmp_path / "r" / "index.html").read_text()


def test_diff_says_a_stage_is_blocked_in_reality_but_not_in_the_model(tmp_path):
    model = simulate(_scenario("imbalance"))        # stage1 starved on q_in
    real = simulate(_scenario("backpressure"))      # stage1 blocked on q_out (D_out = 1)
    res = idle_difference(model, real)
    assert any(line.startswith("stage1 blocked") and line.endswith("0% predicted")
               for line in res["differences"]), res["differences"]
    assert "the verdict differs: predicted stage imbalance, measured backpressure" in \
        res["differences"]
    p = write_trace(model, tmp_path / "p.parquet")
    m = write_trace(real, tmp_path / "m.parquet")
    out = runner.invoke(app, ["diff", str(p), str(m)])
    assert "idle causes: stage1 blocked" in out.stdout
    assert idle_difference(model, model)["differences"] == []
