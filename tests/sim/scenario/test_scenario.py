"""Scenario loading, overrides and the errors bad input gets."""

from __future__ import annotations

import pytest

from pipefill.sim.errors import ScenarioError
from pipefill.sim.policies.phase_pp import PhasePP
from pipefill.sim.scenario.costs import CostSpec, CostTable
from pipefill.sim.scenario.load import apply_overrides, load_raw, load_scenario


def test_default_scenario_is_valid_and_documented():
    sc = load_scenario()
    assert sc.name == "default"
    assert isinstance(sc.policy, PhasePP)
    assert sc.policy.d_in == 2 and sc.policy.d_out == 2
    assert sc.steps == 2
    assert sc.transport.envelope_size == 1 * 16 * 3 * 60 * 104 * 2


def test_overrides_reach_every_table():
    sc = load_scenario(None, ["policy.d_in=3", "costs.decode.mean=120", "run.chunks=7",
                              "run.warmup=2", "transport.latency_ms=0.5",
                              'policy.stage0_order="consumer_first"', "policy.hard_cuts=[3, 5]"])
    assert isinstance(sc.policy, PhasePP)
    assert sc.policy.d_in == 3 and sc.policy.hard_cuts == [3, 5]
    assert sc.costs["decode"].mean == 120.0
    assert sc.run.chunks == 7 and sc.transport.latency_ms == 0.5
    assert sc.policy.stage0_order == "consumer_first"


def test_override_extends_a_scalar_cost():
    raw = {"costs": {"decode": 70.0}}
    assert apply_overrides(raw, ["costs.decode.cv=0.1"])["costs"]["decode"] == {
        "mean": 70.0, "cv": 0.1}
    assert raw == {"costs": {"decode": 70.0}}  # the input is not mutated


@pytest.mark.parametrize(("sets", "field", "words"), [
    (["policy.d_in=0"], "policy.d_in", "greater than or equal to 1"),
    (["policy.name=\"nope\""], "policy.name", "allowed: serial, phase_pp"),
    (["policy.depth=3"], "policy.depth", "not a field of phase_pp"),
    (["policy.recompute=\"r2\""], "policy.recompute", "'r1', 'r0a' or 'r0'"),
    (["costs.decode.mean=-1"], "costs.decode.mean", "greater than or equal to 0"),
    (["costs.warp.mean=1"], "costs.warp", "unknown phase"),
    (["run.chunks=0"], "run.chunks", "greater than or equal to 1"),
    (['run.source="realtime"'], "run", "fps_in is required"),
    (["transport.bandwidth_gbps=0"], "transport.bandwidth_gbps", "greater than 0"),
    (['costs.decode.dist="uniform"'], "costs.decode", "low <= high"),
    (["nonsense"], "--set", "table.field=value"),
    (["extra.x=1"], "extra", "unknown table"),
])
def test_bad_input_names_the_field(sets, field, words):
    with pytest.raises(ScenarioError) as info:
        load_scenario(None, sets)
    assert info.value.field == field
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_phase_cost_for_the_policy():
    raw, _ = load_raw(None)
    del raw["costs"]["recompute"]
    from pipefill.sim.scenario.load import build_scenario

    with pytest.raises(ScenarioError, match=r"^costs.recompute: missing: policy phase_pp"):
        build_scenario(raw)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ScenarioError, match=r"scenario: .*cannot read"):
        load_scenario(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nchunks = 3\n")
    with pytest.raises(ScenarioError, match="invalid TOML"):
        load_scenario(bad)


def test_cost_distributions_have_their_means():
    import numpy as np

    rng = np.random.default_rng(0)
    for spec in (CostSpec(dist="normal", mean=10, cv=0.1),
                 CostSpec(dist="lognormal", mean=10, cv=0.3),
                 CostSpec(dist="uniform", low=5, high=15),
                 CostSpec(dist="empirical", samples=[8, 10, 12])):
        assert spec.draw(rng, (20000,)).mean() == pytest.approx(10, rel=0.02)
        assert not spec.deterministic
    assert CostSpec(mean=3).deterministic


def test_pattern_and_drift_vary_cost_per_chunk():
    spec = CostSpec(mean=10, pattern=[1.0, 2.0], drift_ms=0.5)
    table = CostTable({"decode": spec}, sessions=1, chunks=4, seed=0)
    assert [table.get("decode", 0, k) for k in range(4)] == [10.0, 20.5, 11.0, 21.5]
    assert spec.mean_at(3) == 21.5
