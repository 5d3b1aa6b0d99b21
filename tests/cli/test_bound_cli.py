"""`pipefill bound`: the default scenario's one-line explanation, JSON keys, a hand-derived
case, sensitivities and their limits, and bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipefill.cli import app

runner = CliRunner()
FREE = "transport={latency_ms=0}"  # no bytes, no latency


def bound_json(*sets: str) -> dict:
    args = ["bound", "--json"]
    for s in sets:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_default_scenario_explains_its_period_in_one_line():
    res = runner.invoke(app, ["bound"])
    assert res.exit_code == 0, res.output
    line = res.stdout.strip().splitlines()[-1]
    # stage1 runs recompute 28 + 2 x denoise 62 = 152 ms per chunk back to back; stage0
    # needs build 8 + decode 74 + encode 18 = 100 ms (34% idle)
    assert line.startswith("period 152.0 ms (78.9 fps, from mean costs) is set by stage1")
    assert "stage0 34% idle" in line
    assert "Cut denoise: each ms saves 2 ms of period" in line
    assert "recompute[k] -> denoise[k] x2 -> recompute[k+1]" in res.stdout


def test_default_scenario_json():
    data = bound_json()
    assert {"period_ms", "critical_cycle", "serial_ms", "sensitivity", "kind", "from_means",
            "limits", "explanation", "cyclicity_chunks"} <= set(data)
    assert data["period_ms"] == pytest.approx(152.0)
    assert (data["kind"], data["from_means"]) == ("exact", True)
    assert data["sensitivity"] == {"denoise": pytest.approx(2.0), "recompute": pytest.approx(1.0)}
    # cutting denoise (x ms a step) pays 2 ms/ms until the lag-2 loop through stage0
    # takes over: 28 + 2x = (74 + 18 + 8 + 28 + 2x + 0.139856 + 0.079952) / 2, the two
    # transports being 0.05 ms + 1797120 B and 599040 B at 20 GB/s: x = 36.109904
    lim = data["limits"]["denoise"]
    assert lim["cost_ms"] == pytest.approx(36.109904)
    assert lim["period_ms"] == pytest.approx(100.219808)
    # serial: every phase and transport of a chunk back to back
    assert data["serial_ms"] == pytest.approx(8 + 28 + 124 + 74 + 18 + 0.139856 + 0.079952)


def test_hand_derived_dependency_loop():
    # r0a with lag 0: build k+1 needs decode + re-encode of chunk k, so one chunk's
    # build 1 -> recompute 2 -> denoise 3 -> decode 4 -> encode 5 is the loop: 15 ms,
    # every phase on it saves 1 ms per ms, and nothing overlaps (serial = period)
    data = bound_json("costs={build=1,recompute=2,denoise=3,decode=4,encode=5}",
                      "policy.recompute_lag=0", FREE)
    assert data["period_ms"] == 15.0 and data["serial_ms"] == 15.0
    assert data["from_means"] is False
    assert data["critical_cycle"] == ("build[k] -> recompute[k] -> denoise[k] -> decode[k] "
                                      "-> encode[k] -> build[k+1]")
    assert data["sensitivity"] == {p: 1.0 for p in
                                   ("encode", "decode", "denoise", "recompute", "build")}
    assert next(iter(data["sensitivity"])) == "encode"  # the lever that pays off longest


def test_greedy_configuration_is_labelled_a_lower_bound():
    data = bound_json("policy.recompute=\"r1\"", "policy.stage0_order=\"consumer_first\"")
    assert data["kind"] == "lower_bound"
    # at mean costs this greedy order settles on the bound itself: stage1 back to back
    assert data["settled"] == {"period_ms": 124.0, "cycle_emits": 1, "span_ms": 124.0}
    assert data["explanation"].startswith("At mean costs the greedy order settles into one "
                                          "emit every 124.0 ms")
    assert "no order of this policy beats 124.0 ms" in data["explanation"]


def test_every_policy_has_a_bound():
    for pol in ("serial", "stream_batch", "layer_pp", "rolling_window"):
        data = bound_json(f'policy={{name="{pol}"}}')
        assert data["period_ms"] > 0 and data["critical_cycle"]
    data = bound_json('policy={name="multi_session"}', "run.sessions=3")
    assert data["kind"] == "exact"


@pytest.mark.parametrize(("sets", "field"), [
    (['policy={name="stream_batch",stages=0}'], "policy.stages"),
    (['policy={name="multi_session",max_batch=0}', "run.sessions=2"], "policy.max_batch"),
    (['policy={name="layer_pp",stages=2,blocks=4,split=[1,1]}'], "policy.split"),
    (['policy={name="nope"}'], "policy.name"),
])
def test_bad_input_is_one_line_and_exit_2(sets, field):
    args = ["bound"]
    for s in sets:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert res.stderr.strip().startswith(f"error: {field}:")
    assert len(res.stderr.strip().splitlines()) == 1
