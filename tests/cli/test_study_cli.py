"""`pipefill study`: each built-in study from the command line on a small scenario, a
user's study file, the report directory, --replay, and bad input (exit 2, one line)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipefill.cli import app

runner = CliRunner()

#: constant costs (ms), 60 chunks: every study runs in a second or two
SMALL = """
[run]
chunks = 60
warmup = 5
[costs]
build = 10.0
denoise = { mean = 40.0, steps = 1 }
recompute = 10.0
decode = 20.0
anchor_decode = 5.0
encode = 5.0
[transport]
latency_ms = 0.0
bandwidth_gbps = 1.0
envelope_bytes = 0
result_bytes = 0
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL, encoding="utf-8")
    return path


def run(*args: str):
    return runner.invoke(app, ["study", *args], terminal_width=200)


def words(text: str) -> str:
    """The output with its line wrapping undone."""
    return " ".join(text.split())


def test_fill(small):
    res = run("fill", str(small), "--set", "policy.recompute=\"r1\"")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("fill: Fill requirement")
    out = words(res.stdout)
    assert ("verdict: - D_out = 1: period 1.7" in out
            and "backpressure (q_out's 1 slot) serialises build and decode (stage0) into "
                "stage1's loop" in out)
    assert ("why, from explain on each key point's simulated trace: - D_in = D_out = 2: "
            "stage imbalance") in out
    assert "- OverlapScore >= 0.30 at 6 of 9 points; not at D_out = 1 (0.00)" in out


def test_coupling(small):
    res = run("coupling", str(small), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["study"] == "coupling" and len(data["points"]) == 10
    assert data["verdict"][1].startswith("r0a: the smallest lag that restores r0's period is 1")


def test_sessions(small):
    # a call costs 40 ms for any batch, but the shared front end needs 30 ms a session:
    # a second session gains a third (stage0 becomes the bottleneck), a fourth nothing
    res = run("sessions", str(small), "--set", "costs.denoise.batch_fixed_ms=40")
    assert res.exit_code == 0, res.output
    assert "- fixed groups: throughput 300.0 -> 40" in words(res.stdout)
    assert "(fixed groups, sessions = 4: stage0 busy back to back" in words(res.stdout)


def test_stream_batch(small):
    res = run("stream-batch", str(small), "--set", "policy.blocks=4")
    assert res.exit_code == 0, res.output
    assert "- bubble matches (P-1)/(M+P-1) within " in words(res.stdout)


def test_out_writes_one_report_section_and_every_point(small, tmp_path):
    out = tmp_path / "report"
    res = run("fill", str(small), "--out", str(out))
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in out.iterdir())
    assert files == [".pipefill-report", "fill_0_heatmap.png", "fill_1_heatmap.png",
                     "fill_2_bars.png", "index.html", "study.json"]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("<h2>") == 2 and "fill: Fill requirement" in page
    assert len(json.loads((out / "study.json").read_text())["points"]) == 9
    again = run("fill", str(small), "--out", str(out))  # an earlier report is replaced
    assert again.exit_code == 0, again.output


def test_a_user_study_file(small, tmp_path):
    study = tmp_path / "depth.toml"
    study.write_text('name = "depth"\ntitle = "D_out"\nquestion = "Which D_out?"\n'
                     'show = ["period_ms"]\n[[axes]]\nfield = "policy.d_out"\n'
                     'values = [1, 2]\n[[rules]]\nrule = "range"\nmetric = "period_ms"\n',
                     encoding="utf-8")
    res = run(str(study), str(small))
    assert res.exit_code == 0, res.output
    assert "- period " in res.stdout and "most at d_out = 1" in words(res.stdout)


def test_replay_measures_the_key_points_beside_their_prediction(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPEFILL_CACHE_DIR", str(tmp_path / "cache"))
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SMALL.replace("60", "20").replace("10.0", "2.0")
                        .replace("40.0", "4.0").replace("20.0", "3.0"), encoding="utf-8")
    study = tmp_path / "one.toml"
    study.write_text('name = "one"\ntitle = "t"\nquestion = "q"\nshow = ["period_ms"]\n'
                     '[[axes]]\nfield = "policy.d_out"\nvalues = [1, 2]\n'
                     '[[rules]]\nrule = "range"\nmetric = "period_ms"\n'
                     '[replay]\npoints = 1\nchunks = 8\nwarmup = 2\n', encoding="utf-8")
    res = run(str(study), str(scenario), "--replay", "--json")
    assert res.exit_code == 0, res.output
    (m,) = json.loads(res.stdout)["measured"]
    assert m["chunks"] == 8 and m["label"] in ("d_out = 1", "d_out = 2")
    assert m["predicted"]["period_ms"] > 0 and m["measured"]["period_ms"] > 0


@pytest.mark.parametrize(("args", "message"), [
    (["fil"], "error: study: NAME: unknown study 'fil' (built-in: fill, coupling, sessions, "
              "stream-batch; or a study file ending in .toml)"),
    (["missing.toml"], "error: missing.toml: file: "),
    (["fill", "--set", "run.chunks=0"], "error: run.chunks: "),
    (["fill", "--set", "policy.d_in=3"], "error: --set: policy.d_in: study fill varies this "
                                         "field at its points"),
    (["coupling", "--set", "policy.recompute=\"r1\""], "error: --set: policy.recompute: "
                                                        "study coupling sets this field"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    res = run(*args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert res.stdout == ""


def test_a_bad_study_file_is_one_line_naming_the_field(tmp_path):
    study = tmp_path / "bad.toml"
    study.write_text('name = "bad"\ntitle = "t"\nquestion = "q"\nshow = ["period_ms"]\n'
                     '[[rules]]\nrule = "reach"\nmetric = "perod_ms"\n', encoding="utf-8")
    res = run(str(study))
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "error: bad.toml: rules.0.metric: unknown column 'perod_ms' (a metric such as "
        "period_ms, a fact (bound_ms, bound_kind, critical_cycle, critical_stages, limit, "
        "limit_queue, limit_slots, busiest, loop_phases, devices, utilisation, queues_held, "
        "queue_slots), an axis field or a derived column: none)"]


def test_an_out_that_cannot_take_the_report_fails_before_any_work(tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("x", encoding="utf-8")
    res = run("fill", "--out", str(blocker))
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"error: --out: {blocker} exists and is not a directory"]
    assert blocker.read_text() == "x"
