"""The public facade: what `import pipefill` costs, that `__all__`, the facade and the
README's "Python API" section name the same things, and that its results are the CLI's."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import pipefill
from pipefill.cli import app
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def api_section() -> str:
    start = README.index("## Python API\n")
    return README[start:README.index("\n## ", start + 1)]


def test_import_loads_no_heavy_library():
    code = "import json, sys, pipefill; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    loaded = set(json.loads(out.stdout))
    assert loaded.isdisjoint({"pandas", "numba", "simpy", "torch", "numpy", "pydantic"})


def test_all_is_the_facade_and_every_name_resolves():
    from pipefill import _SOURCES

    assert pipefill.__all__ == sorted(_SOURCES)
    for name in pipefill.__all__:
        assert getattr(pipefill, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = pipefill.nope  # type: ignore[attr-defined]


def test_the_readme_documents_exactly_all():
    rows = [line for line in api_section().splitlines() if line.startswith("| `")]
    named = {n for row in rows for n in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert named == set(pipefill.__all__)


def test_the_readme_api_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", api_section(), re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        expected = [line[2:] for line in block.splitlines() if line.startswith("# ")]
        exec(compile(block, "README.md", "exec"), {})
        printed = capsys.readouterr().out.splitlines()
        # the figures the README prints are the default scenario's (not machine times)
        for line in expected:
            if "measured" in line or line.endswith("..."):
                continue
            assert line in printed or any(line.strip() in p for p in printed), line


def test_simulate_is_the_cli_simulate():
    sim = pipefill.simulate(sets=["run.chunks=40"])
    res = CliRunner().invoke(app, ["simulate", "--set", "run.chunks=40", "--json"])
    assert res.exit_code == 0
    assert json.loads(res.stdout) == json.loads(json.dumps(sim.to_json()))


def test_overrides_apply_to_a_scenario_object_and_a_policy_switch():
    sc = pipefill.load_scenario(sets=["run.chunks=30"])
    assert pipefill.simulate(sc, sets=["policy.d_out=1"]).scenario.policy.params()["d_out"] == 1
    serial = pipefill.simulate(sc, policy="serial")
    assert serial.scenario.policy.name == "serial" and serial.scenario.run.chunks == 30
    assert pipefill.bound(sc).period_ms == pytest.approx(152.0, abs=0.05)


def test_a_grid_as_mapping_or_strings_is_the_same_sweep():
    sc = pipefill.load_scenario(sets=["run.chunks=30"])
    a = pipefill.sweep({"policy.d_in": [1, 2]}, sc)
    b = pipefill.sweep(["policy.d_in=1,2"], sc)
    assert a.table["period_ms"].tolist() == b.table["period_ms"].tolist()
    assert a.axes == ["policy.d_in"] and a.ran == 2


def test_simulate_streams_without_holding_the_trace(tmp_path):
    out = tmp_path / "t.parquet"
    sim = pipefill.simulate(sets=["run.chunks=30"], out=out, keep_trace=False)
    assert sim.trace is None and sim.engine == "simpy" and out.exists()
    with pytest.raises(ValueError, match="kept no trace"):
        _ = sim.events
    assert pipefill.read_trace(out).meta["source"] == "sim"


def test_bad_input_is_a_scenario_error_naming_the_field(tmp_path):
    with pytest.raises(pipefill.ScenarioError, match=r"^policy\.name: unknown policy"):
        pipefill.simulate(policy="nope")
    with pytest.raises(pipefill.TraceError, match="out"):
        pipefill.simulate(out=tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()
