"""`pipefill report`: the three input kinds, the self-contained HTML, atomic output, bad input."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from pipefill.cli import app
from pipefill.reports import build
from pipefill.reports.build import REPORT_FIGURES, build_report
from pipefill.sim.engine.core import simulate
from pipefill.sim.sweep.grid import Axis, run_sweep
from pipefill.traces.io import write_table, write_trace
from pipefill.traces.schema import Trace
from tests.helpers.scenarios import make_scenario

COSTS = {"build": 2.0, "denoise": {"mean": 6.0, "steps": 2}, "decode": 7.0}
TRANSPORT = {"latency_ms": 0.05, "bandwidth_gbps": 10.0, "envelope_bytes": 400_000,
             "result_bytes": 400_000}
runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    pol = {"name": "phase_pp", "d_in": 2, "d_out": 2}
    plain = simulate(make_scenario(pol, COSTS, chunks=20, warmup=2, transport=TRANSPORT))
    cut = simulate(make_scenario({**pol, "hard_cuts": [8]}, COSTS, chunks=20, warmup=2,
                                 transport=TRANSPORT))
    measured = Trace(cut.events, {**cut.meta, "source": "exec"})
    raw = {"run": {"chunks": 10, "warmup": 2}, "policy": pol, "costs": COSTS,
           "transport": TRANSPORT}
    axes = [Axis("policy.d_in", (1, 2)), Axis("policy.d_out", (1, 2))]
    table = run_sweep(raw, [], axes)
    out = {"trace": d / "trace.parquet", "cut": d / "cut.parquet",
           "measured": d / "measured.csv", "sweep": d / "sweep.parquet"}
    write_trace(plain, out["trace"])
    write_trace(cut, out["cut"])
    write_trace(measured, out["measured"])
    write_table(table, out["sweep"], {"kind": "sweep", "scenario_name": "t", "scenario": raw,
                                      "grid": {a.field: list(a.values) for a in axes}})
    return out


def report(*args: str | Path) -> Result:
    return runner.invoke(app, ["report", *(str(a) for a in args)])


def assert_complete(out: Path, kind: str) -> str:
    """Every figure file is embedded in index.html, byte for byte, and nothing else is there."""
    html = (out / "index.html").read_text(encoding="utf-8")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(f"{n}.png" for n in REPORT_FIGURES[kind])
    for name in pngs:
        data = base64.b64encode((out / name).read_bytes()).decode()
        assert f'data-file="{name}"' in html and f"data:image/png;base64,{data}" in html
    assert not re.search(r'src="(?!data:)', html)  # self-contained: no external files
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return html


def test_report_of_one_trace(tmp_path, files):
    out = tmp_path / "rep"
    res = report(files["trace"], "--out", out)
    assert res.exit_code == 0, res.output
    html = assert_complete(out, "trace")
    assert "phase_pp" in html and "period_ms" in html and "pipefill simulate" in html
    assert "hard cut" not in html.split("<h2>Figures")[0]  # no cut, no notice
    assert "trace report" in res.output and "gantt.png" in res.output


def test_report_of_a_trace_with_a_hard_cut_marks_it(tmp_path, files):
    out = tmp_path / "rep"
    res = report(files["cut"], "--out", out, "--json")
    assert res.exit_code == 0, res.output
    html = assert_complete(out, "trace")
    assert 'class="notice"' in html and "hard cut before chunk 8 (epoch -&gt; 1)" in html
    assert "hard cut before chunk 8" in res.output


def test_report_of_a_predicted_measured_pair(tmp_path, files):
    out = tmp_path / "rep"
    res = report(files["measured"], files["trace"], "--out", out, "--bound", "8.5")
    assert res.exit_code == 0, res.output
    html = assert_complete(out, "pair")
    assert "predicted (trace.parquet)" in html and "measured (measured.csv)" in html
    assert "measured - predicted" in html and "--bound 8.5" in html


def test_report_of_a_sweep(tmp_path, files):
    out = tmp_path / "rep"
    res = report(files["sweep"], "--out", out)
    assert res.exit_code == 0, res.output
    html = assert_complete(out, "sweep")
    table = html.split("<h2>Sweep table</h2>")[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 4  # header + one row per grid point
    assert "--grid policy.d_in=1,2" in html


def test_neither_trace_nor_sweep_exits_2_and_writes_nothing(tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n1,2\n")
    out = tmp_path / "rep"
    res = report(junk, "--out", out)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "junk.csv: neither a trace" in lines[0]
    assert not out.exists()


def test_refuses_a_directory_that_is_not_a_report(tmp_path, files):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    res = report(files["trace"], "--out", out)
    assert res.exit_code == 2 and "--out" in res.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_rerun_replaces_an_earlier_report(tmp_path, files):
    out = tmp_path / "rep"
    assert report(files["sweep"], "--out", out).exit_code == 0
    assert report(files["trace"], "--out", out).exit_code == 0
    assert_complete(out, "trace")  # no sweep figure is left behind


def test_a_failed_render_leaves_no_partial_report(tmp_path, files, monkeypatch):
    def boom(data, opts):
        raise RuntimeError("draw failed")

    broken = build.FigureKind("x", "x", build.FIGURES["queues"].data, boom)
    monkeypatch.setitem(build.FIGURES, "queues", broken)
    with pytest.raises(RuntimeError):
        build_report([files["trace"]], tmp_path / "rep")
    assert list(tmp_path.iterdir()) == []


def test_sweep_table_axes_come_from_the_metadata(tmp_path, files):
    table = pd.read_parquet(files["sweep"])
    assert list(table.columns[:2]) == ["policy.d_in", "policy.d_out"]
    write_table(table, tmp_path / "s.csv", {"kind": "sweep"})  # no grid: axes before period
    res = report(tmp_path / "s.csv", "--out", tmp_path / "rep")
    assert res.exit_code == 0, res.output


def test_a_failed_write_keeps_the_old_report_and_no_temp_dir(tmp_path, files, monkeypatch):
    out = tmp_path / "rep"
    assert report(files["sweep"], "--out", out).exit_code == 0
    before = sorted(p.name for p in out.iterdir())

    def full_disk(tmp: Path, target: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "_publish", full_disk)
    res = report(files["trace"], "--out", out)
    assert res.exit_code == 2 and "No space left" in res.output
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_a_trace_without_spans_exits_2(tmp_path, files):
    empty = tmp_path / "empty.parquet"
    write_trace(Trace(pd.read_parquet(files["trace"]).iloc[:0], {"source": "sim"}), empty)
    res = report(empty, "--out", tmp_path / "rep")
    assert res.exit_code == 2 and "no spans" in res.output
    assert not (tmp_path / "rep").exists()
