"""`pipefill import`: Chrome trace events through a map; a real torch.profiler trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.traces.import_map import load_map, parse_map
from pipefill.traces.io import read_trace
from pipefill.traces.metrics import compute_metrics
from pipefill.traces.profile_import import import_profile
from pipefill.traces.schema import TraceError
from tests.helpers import ROOT

runner = CliRunner()
EXAMPLE_MAP = ROOT / "examples" / "instrument_map.toml"

GENERIC_MAP = {
    "stages": {"11": "stage0", "22": "stage1"},
    "phase": [
        {"pattern": "gen", "name": "denoise", "stage": "{tid}", "chunk": "{args[chunk]}",
         "step": "{args[step]}"},
        {"pattern": r"frames_out (?P<chunk>\d+)", "name": "emit", "stage": "{tid}",
         "chunk": "{chunk}", "kind": "mark"},
        {"pattern": "(?P<phase>vae_decode)", "name": "decode", "stage": "{tid}",
         "chunk": "{args[chunk]}"},
        {"pattern": "queue_depth", "name": "q_in", "stage": "stage1", "kind": "counter",
         "value": "{args[depth]}"},
    ],
}


def generic_events() -> dict:
    """Chrome events in every supported shape: X, B/E pairs, i, C and noise."""
    ev = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "x"}}]
    for k in range(3):
        t = 1000.0 + 10_000.0 * k
        ev.append({"ph": "X", "name": "gen", "pid": 1, "tid": 22, "ts": t, "dur": 4000.0,
                   "args": {"chunk": k, "step": 0}})
        ev.append({"ph": "B", "name": "vae_decode", "pid": 1, "tid": 11, "ts": t + 4000.0,
                   "args": {"chunk": k}})
        ev.append({"ph": "X", "name": "aten::conv2d", "pid": 1, "tid": 11, "ts": t + 4100.0,
                   "dur": 50.0})
        ev.append({"ph": "E", "pid": 1, "tid": 11, "ts": t + 7000.0})
        ev.append({"ph": "i", "name": f"frames_out {k}", "pid": 1, "tid": 11, "ts": t + 7000.0})
        ev.append({"ph": "C", "name": "queue_depth", "pid": 1, "ts": t, "args": {"depth": k}})
    return {"traceEvents": ev}


def test_generic_events_become_exact_rows():
    tr = import_profile(generic_events(), parse_map(GENERIC_MAP))
    ev = tr.events
    spans = ev[ev["kind"] == "span"]
    got = sorted(zip(spans["name"], spans["stage"], spans["chunk"], spans["start_ms"],
                     spans["end_ms"], strict=True))
    assert got == sorted([("denoise", "stage1", k, 10.0 * k, 10.0 * k + 4.0) for k in range(3)]
                         + [("decode", "stage0", k, 10.0 * k + 4.0, 10.0 * k + 7.0)
                            for k in range(3)])
    emits = tr.marks("emit")
    assert emits["chunk"].tolist() == [0, 1, 2]
    assert emits["start_ms"].tolist() == [7.0, 17.0, 27.0]
    assert tr.counters("q_in")["value"].tolist() == [0.0, 1.0, 2.0]
    assert tr.meta["import"]["mapped"] == 12 and tr.source == "import"
    assert compute_metrics(tr, warmup=0)["period_ms"] == pytest.approx(10.0)


def test_a_map_that_matches_nothing_names_what_it_saw():
    m = parse_map({"phase": [{"pattern": "nothing", "stage": "s"}]})
    with pytest.raises(TraceError, match=r"^map: no event matched .*'gen'.*'vae_decode'"):
        import_profile(generic_events(), m)


@pytest.mark.parametrize(("rule", "field"), [
    ({"pattern": "gen", "stage": "x", "chunk": "{args[nope]}"}, "map.phase[0].chunk"),
    ({"pattern": "gen", "stage": "x", "chunk": "{args[step]}x"}, "map.phase[0].chunk"),
])
def test_bad_templates_name_the_rule(rule, field):
    with pytest.raises(TraceError, match=rf"^{field.replace('[', '.').replace(']', '.')}"):
        import_profile(generic_events(), parse_map({"phase": [rule]}))


@pytest.mark.parametrize(("raw", "field"), [
    ({"phase": []}, "map.phase"),
    ({"phase": [{"pattern": "(", "stage": "s"}]}, "map.phase[0].pattern"),
    ({"phase": [{"pattern": "a"}]}, "map.phase[0].stage"),
    ({"phase": [{"pattern": "a", "stage": "s", "kind": "blob"}]}, "map.phase[0].kind"),
    ({"events": {"time_unit": "s"}, "phase": [{"pattern": "a", "stage": "s"}]},
     "map.events.time_unit"),
])
def test_bad_maps_name_the_field(raw, field):
    with pytest.raises(TraceError) as err:
        parse_map(raw)
    assert err.value.field == field


def test_missing_chunk_ids_are_rejected():
    m = parse_map({"phase": [{"pattern": "gen", "name": "denoise", "stage": "s"}]})
    with pytest.raises(TraceError, match=r"^chunk: 3 events have no chunk id"):
        import_profile(generic_events(), m)


def profiled_model(path: Path) -> None:
    """A small model run under torch.profiler, phases annotated with record_function."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
    x = torch.randn(32, 64)
    acts = [torch.profiler.ProfilerActivity.CPU]
    with torch.inference_mode(), torch.profiler.profile(activities=acts) as prof:
        for k in range(4):
            with torch.profiler.record_function(f"stage1/denoise/{k}/0"):
                y = net(x)
            with torch.profiler.record_function(f"stage0/decode/{k}"):
                y = net(y)
            with torch.profiler.record_function(f"stage0/emit/{k}"):
                pass
    prof.export_chrome_trace(str(path))


def test_a_real_torch_profiler_trace_imports(tmp_path):
    prof = tmp_path / "prof.json"
    profiled_model(prof)
    out = tmp_path / "t.parquet"
    res = runner.invoke(app, ["import", str(prof), "--map", str(EXAMPLE_MAP), "--out", str(out),
                              "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["span"] == 8 and data["mark"] == 4 and data["stages"] == ["stage0", "stage1"]
    tr = read_trace(out)
    sp = tr.spans
    assert sorted(sp[sp["name"] == "denoise"]["chunk"]) == [0, 1, 2, 3]
    assert (sp[sp["name"] == "denoise"]["step"] == 0).all()
    # every decode starts after its chunk's denoise ends (one thread ran both)
    d = sp.set_index(["name", "chunk"])
    assert all(d.loc[("decode", k), "start_ms"] >= d.loc[("denoise", k), "end_ms"]
               for k in range(4))
    assert tr.marks("emit")["chunk"].tolist() == [0, 1, 2, 3]


def test_import_cli_bad_input(tmp_path):
    prof = tmp_path / "prof.json"
    prof.write_text(json.dumps(generic_events()))
    bad_map = tmp_path / "m.toml"
    bad_map.write_text('[[phase]]\npattern = "nothing"\nstage = "s"\n')
    out = tmp_path / "t.parquet"
    res = runner.invoke(app, ["import", str(prof), "--map", str(bad_map), "--out", str(out)])
    assert res.exit_code == 2 and not out.exists()
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: map: no event matched")
    (tmp_path / "junk.json").write_text("{not json")
    res = runner.invoke(app, ["import", str(tmp_path / "junk.json"), "--map", str(EXAMPLE_MAP),
                              "--out", str(out)])
    assert res.exit_code == 2 and res.stderr.startswith("error: profile: junk.json: not JSON")
    assert load_map(EXAMPLE_MAP).events.categories == ["user_annotation"]
