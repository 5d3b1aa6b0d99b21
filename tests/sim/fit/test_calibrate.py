"""`calibrate`: fitted scenarios reproduce what they were fitted to; distribution choice;
transport fit; TOML writing; the CLI."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.sim.engine.core import simulate
from pipefill.sim.fit.calibrate import (
    calibrate_trace,
    choose_dist,
    fit_samples,
    trim_outliers,
)
from pipefill.sim.fit.transport import fit_link, fit_transport, send_roles
from pipefill.sim.scenario.load import build_scenario
from pipefill.sim.scenario.model import Transport
from pipefill.traces.io import write_trace
from pipefill.traces.metrics import compute_metrics
from pipefill.traces.recorder import Recorder, Tag
from pipefill.traces.toml_writer import to_toml
from tests.helpers.scenarios import make_scenario

runner = CliRunner()
cost = st.floats(0.5, 50.0).map(lambda x: round(x, 3))


@given(build=cost, denoise=cost, decode=cost, recompute=cost, steps=st.integers(1, 3),
       d_in=st.integers(1, 3), mode=st.sampled_from(["r1", "r0"]))
@settings(max_examples=25, deadline=None)
def test_calibrating_a_deterministic_run_gives_back_its_scenario(build, denoise, decode,
                                                                 recompute, steps, d_in, mode):
    costs = {"build": build, "denoise": {"mean": denoise, "steps": steps}, "decode": decode,
             "recompute": recompute}
    sc = make_scenario({"name": "phase_pp", "d_in": d_in, "recompute": mode}, costs, chunks=14)
    trace = simulate(sc)
    cal = calibrate_trace(trace)
    assert cal.raw["costs"]["build"] == {"dist": "constant", "mean": build}
    # steps is fitted (the trace's step count), so written even when it is 1
    assert cal.raw["costs"]["denoise"] == {"dist": "constant", "mean": denoise, "steps": steps}
    assert cal.raw["policy"] == sc.policy.params()
    again = compute_metrics(simulate(cal.scenario))
    first = compute_metrics(trace)
    assert again["period_ms"] == pytest.approx(first["period_ms"], rel=1e-6)
    assert again["overlap_score"] == pytest.approx(first["overlap_score"], abs=1e-6)


def test_distribution_choice_follows_the_shape_of_the_samples():
    rng = np.random.default_rng(7)
    assert choose_dist(rng.lognormal(3.0, 0.6, 400)) == "lognormal"
    assert choose_dist(rng.normal(50.0, 10.0, 400)) == "normal"
    assert choose_dist(np.full(20, 4.0)) == "constant"
    spec = fit_samples(np.array([1.0, 2.0, 3.0]), "normal")
    assert spec == {"dist": "normal", "mean": 2.0, "cv": 0.5}
    assert fit_samples(np.array([1.0, 2.5]), "empirical") == {"dist": "empirical",
                                                              "samples": [1.0, 2.5]}


def _sends(sizes_and_ms: list[tuple[float, float]]):
    rec = Recorder()
    t = 0.0
    for i, (nbytes, ms) in enumerate(sizes_and_ms):
        rec.span("send", "stage0", "comm", Tag(0, i), t, t + ms, value=nbytes)
        t += 10.0
    return rec.trace({})


def test_transport_fit_recovers_latency_and_bandwidth():
    # 0.2 ms + bytes / (4 GB/s): 4e6 B -> 1.2 ms, 8e6 B -> 2.2 ms
    trace = _sends([(4e6, 1.2), (8e6, 2.2), (4e6, 1.2), (8e6, 2.2)])
    fit = fit_transport(trace, {"latency_ms": 1.0, "bandwidth_gbps": 1.0, "dtype": "bf16"})
    assert fit["latency_ms"] == pytest.approx(0.2) and fit["bandwidth_gbps"] == pytest.approx(4.0)
    one_size = fit_transport(_sends([(4e6, 1.5), (4e6, 1.7)]), {"bandwidth_gbps": 8.0})
    assert one_size == {"bandwidth_gbps": 8.0, "latency_ms": pytest.approx(1.1)}
    faster = fit_transport(_sends([(4e6, 0.1), (4e6, 0.1)]), {"bandwidth_gbps": 8.0})
    assert faster == {"bandwidth_gbps": pytest.approx(40.0), "latency_ms": 0.0}
    handoff = fit_transport(_sends([(4e6, 0.002), (8e6, 0.001), (1e6, 0.002)]), {})
    assert handoff == {"bandwidth_gbps": 1e6, "latency_ms": 0.002}
    through_origin = fit_transport(_sends([(1e6, 0.0), (2e6, 1.0), (3e6, 1.0)]), {})
    assert through_origin["latency_ms"] == 0.0


def test_sends_without_bytes_are_sized_by_what_the_policy_says_the_stage_sends():
    pp = make_scenario({"name": "phase_pp"}, {"build": {"mean": 1.0}, "denoise": {"mean": 1.0},
                                              "decode": {"mean": 1.0}})
    lp = make_scenario({"name": "layer_pp", "stages": 2, "blocks": 4}, {"denoise": {"mean": 1}})
    assert send_roles(pp) == {"stage0": "envelope", "stage1": "result"}
    assert send_roles(lp) == {"stage0": "activation", "stage1": "control"}
    given = {"envelope_bytes": 200_000, "result_bytes": 1_000_000}
    link = Transport.model_validate(given)
    env, res = link.envelope_size, link.result_size
    rec = Recorder()  # 0.5 ms + 1 GB/s: a byte costs 1e-6 ms
    for i, (stage, nbytes) in enumerate([("front", env), ("back", res), ("token", 0),
                                         ("front", env), ("back", res)]):
        rec.span("send", stage, "comm", Tag(0, i), 10.0 * i, 10.0 * i + 0.5 + nbytes * 1e-6)
    roles = {"front": "envelope", "back": "activation", "token": "control"}
    fit = fit_transport(rec.trace({}), given, roles)
    assert fit["latency_ms"] == pytest.approx(0.5) and fit["bandwidth_gbps"] == pytest.approx(1)
    unknown = fit_transport(rec.trace({}), given)  # no policy: every message a result
    assert unknown["bandwidth_gbps"] != pytest.approx(1)


def test_message_sizes_are_taken_from_the_stages_the_policy_says_send_them():
    rec = Recorder()
    for i, (stage, nbytes) in enumerate([("front", 300.0), ("back", 900.0), ("front", 500.0),
                                         ("back", 700.0), ("front", 400.0)]):
        rec.span("send", stage, "comm", Tag(0, i), 10.0 * i, 10.0 * i + 1.0, value=nbytes)
    free = {"envelope_bytes": 0, "result_bytes": 0}
    link = fit_link(rec.trace({}), free, {"front": "envelope", "back": "result"})
    assert link.sizes == {"envelope_bytes": 400, "result_bytes": 800}  # the medians
    assert fit_link(rec.trace({}), free).sizes == {}  # no policy: no sender is known


toml_scalar = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8),
                        st.floats(allow_nan=False, allow_infinity=False, width=64))
toml_table = st.dictionaries(st.text(min_size=1, max_size=6),
                             st.one_of(toml_scalar, st.lists(st.integers(0, 9), max_size=4)),
                             max_size=4)


@given(top=toml_table, tables=st.dictionaries(st.text(min_size=1, max_size=6),
                                              st.dictionaries(st.text(min_size=1, max_size=6),
                                                              toml_table, max_size=2),
                                              max_size=3))
def test_toml_writer_round_trips(top, tables):
    tables = {k: v for k, v in tables.items() if k not in top}
    doc = {**top, **tables}
    assert tomllib.loads(to_toml(doc, header="a\nb")) == doc


def test_calibrate_cli_writes_a_scenario_simulate_accepts(tmp_path):
    sc = make_scenario({"name": "serial", "hard_cuts": [3]}, {
        "build": {"dist": "lognormal", "mean": 3.0, "cv": 0.2},
        "denoise": {"mean": 6.0, "steps": 2}, "decode": {"dist": "normal", "mean": 4.0,
                                                         "cv": 0.1}}, chunks=30)
    trace_path, out = tmp_path / "t.parquet", tmp_path / "cal.toml"
    write_trace(simulate(sc), trace_path)
    res = runner.invoke(app, ["calibrate", str(trace_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"scenario: {out}" in res.stdout
    raw = tomllib.loads(out.read_text())
    assert raw["policy"] == {"name": "serial", "recompute": "r1", "recompute_every": 1,
                             "hard_cuts": [3]}
    assert raw["costs"]["denoise"]["steps"] == 2
    build_scenario(raw)
    sim = runner.invoke(app, ["simulate", str(out), "--json"])
    assert sim.exit_code == 0, sim.output
    res = runner.invoke(app, ["calibrate", str(trace_path), "--out", str(out), "--dist",
                              "empirical", "--json"])
    assert res.exit_code == 0 and '"dist": "empirical"' in res.stdout


def test_calibrate_cli_bad_input_exits_2_without_output(tmp_path):
    out = tmp_path / "cal.toml"
    bare = tmp_path / "bare.csv"
    write_trace(simulate(make_scenario({"name": "serial"}, {"build": 1, "denoise": 1,
                                                             "decode": 1}, chunks=3)), bare)
    lines = bare.read_text().splitlines()
    bare.write_text("\n".join(lines[1:]) + "\n")  # drop the metadata line
    res = runner.invoke(app, ["calibrate", str(bare), "--out", str(out)])
    # no metadata at all: the run table is made from the trace, the policy must be named
    assert res.exit_code == 2 and res.stderr.startswith("error: meta.policy: missing")
    assert not out.exists()
    res = runner.invoke(app, ["calibrate", str(bare), "--out", str(out), "--dist", "gamma"])
    assert res.exit_code == 2 and "--dist" in res.stderr and not out.exists()


def test_unmeasured_phases_keep_their_given_cost():
    sc = make_scenario({"name": "phase_pp"}, {"build": 1, "denoise": 2, "decode": 3,
                                              "anchor_decode": 9.5}, chunks=4)
    cal = calibrate_trace(simulate(sc))
    fits = {f.phase: f for f in cal.fits}
    assert fits["anchor_decode"].samples == 0
    assert cal.raw["costs"]["anchor_decode"]["mean"] == 9.5
    assert isinstance(cal.raw["run"], dict) and "fps_in" not in cal.raw["run"]
    assert pd.isna(fits["anchor_decode"].mean_ms)


def test_pauses_are_left_out_of_parametric_fits_but_not_of_empirical_ones():
    x = np.array([10.0, 10.2, 9.9, 10.1, 9.8, 10.0, 31.0])
    assert fit_samples(x, "normal")["mean"] == pytest.approx(10.0)
    assert fit_samples(x)["dist"] != "empirical"
    assert len(fit_samples(x, "empirical")["samples"]) == 7
    spread = np.random.default_rng(3).normal(50.0, 15.0, 300)
    assert len(trim_outliers(spread)) == 300  # a wide distribution is not an outlier


def test_two_samples_with_spread_are_not_a_constant():
    # before: constant from 2 samples whatever their spread
    assert choose_dist(np.array([10.0, 20.0])) == "normal"
    assert fit_samples(np.array([10.0, 20.0])) == {
        "dist": "normal", "mean": 15.0, "cv": round(float(np.std([10.0, 20.0], ddof=1)) / 15, 6)}
    assert choose_dist(np.array([10.0, 10.0])) == "constant"
    assert choose_dist(np.array([10.0])) == "constant"


def test_every_phase_is_written_in_the_same_minimal_form():
    # recompute/encode are not measured (r1): kept as given, but without the internal
    # defaults (batch_knee, drift_ms, ...) the metadata carries
    sc = make_scenario({"name": "phase_pp", "recompute": "r1"}, {
        "build": 1.0, "denoise": {"mean": 4.0, "steps": 2}, "decode": 2.0,
        "recompute": {"dist": "lognormal", "mean": 3.0, "cv": 0.1},
        "encode": {"mean": 1.5, "drift_ms": 0.25}}, chunks=14)
    cal = calibrate_trace(simulate(sc))
    assert cal.raw["costs"] == {
        "build": {"dist": "constant", "mean": 1.0},
        "denoise": {"dist": "constant", "mean": 4.0, "steps": 2},
        "recompute": {"dist": "lognormal", "mean": 3.0, "cv": 0.1},
        "decode": {"dist": "constant", "mean": 2.0},
        "encode": {"dist": "constant", "mean": 1.5, "drift_ms": 0.25},
    }
    assert list(cal.raw["costs"]["denoise"]) == ["dist", "mean", "steps"]


def test_a_trace_without_spans_is_refused(tmp_path):
    trace = simulate(make_scenario({"name": "serial"}, {"build": 1.0, "denoise": 2.0,
                                                        "decode": 1.0}, chunks=3))
    empty = tmp_path / "empty.parquet"
    write_trace(type(trace)(trace.events.iloc[:0], trace.meta), empty)
    out = tmp_path / "cal.toml"
    res = runner.invoke(app, ["calibrate", str(empty), "--out", str(out)])
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: MEASURED: no compute spans in 0 rows: nothing to "
                                  "fit (was the run cut short?)")
    assert not out.exists()
