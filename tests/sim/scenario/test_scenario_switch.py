"""Switching policies with --set policy.name / --policy, and partial scenario files merged
over the built-in default (issue 13, item 3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipefill.sim.policies import POLICIES
from pipefill.sim.policies.layer_pp import LayerPP
from pipefill.sim.policies.phase_pp import PhasePP
from pipefill.sim.scenario.load import (
    ScenarioError,
    apply_overrides,
    load_raw,
    load_scenario,
    merge_over_default,
)


def test_switching_policy_starts_from_its_defaults():
    # before: "policy.anchor: not a field of layer_pp" (a phase_pp field nobody set)
    sc = load_scenario(None, ["policy.name=layer_pp"])
    assert sc.policy.name == "layer_pp"
    assert sc.policy == POLICIES["layer_pp"]()  # every field its default


def test_fields_set_explicitly_carry_over_in_either_order():
    before = load_scenario(None, ["policy.stages=3", "policy.name=layer_pp"])
    after = load_scenario(None, ["policy.name=layer_pp", "policy.stages=3"])
    assert isinstance(before.policy, LayerPP) and isinstance(after.policy, LayerPP)
    assert before.policy.n_stages == after.policy.n_stages == 3
    assert before.policy == after.policy


def test_an_explicit_field_of_the_old_policy_is_a_clear_error():
    with pytest.raises(ScenarioError, match=r"^policy.d_in: not a field of serial"):
        load_scenario(None, ["policy.d_in=3", "policy.name=serial"])


def test_setting_the_same_policy_name_keeps_its_fields():
    raw = apply_overrides(load_raw(None)[0], ["policy.d_in=3", "policy.name=phase_pp"])
    assert raw["policy"]["recompute"] == "r0a" and raw["policy"]["d_in"] == 3


@given(name=st.sampled_from(sorted(set(POLICIES) - {"phase_pp"})))  # not the default's
def test_every_registered_policy_can_be_switched_to(name):
    default = load_raw(None)[0]
    raw = apply_overrides(default, [f"policy.name={name}"])
    # the name, plus the fields both policies have where the default's value is not the
    # new policy's default and the new policy accepts it (issue 22: like for like)
    kept = {k: v for k, v in raw["policy"].items() if k != "name"}
    assert raw["policy"]["name"] == name
    assert all(default["policy"][k] == v for k, v in kept.items())
    assert raw["costs"] == default["costs"]  # only the policy table changes
    load_scenario(None, [f"policy.name={name}"])  # and it is a valid scenario


def test_a_file_with_only_a_policy_table_is_merged_over_the_default(tmp_path):
    path = tmp_path / "only_policy.toml"
    path.write_text('[policy]\nname = "serial"\n')
    sc = load_scenario(path)
    default = load_scenario()
    assert sc.name == "only_policy" and sc.policy == POLICIES["serial"]()
    assert sc.costs == default.costs and sc.run == default.run
    assert sc.transport == default.transport


def test_a_named_policy_table_is_that_policy_with_its_own_defaults(tmp_path):
    path = tmp_path / "named.toml"
    path.write_text('[policy]\nname = "phase_pp"\nd_in = 3\n')
    sc = load_scenario(path)
    assert sc.policy == POLICIES["phase_pp"].model_validate({"d_in": 3})  # not r0a
    default = load_scenario().policy
    assert isinstance(sc.policy, PhasePP) and isinstance(default, PhasePP)
    assert sc.policy.recompute != default.recompute


def test_a_policy_table_without_a_name_is_merged_field_by_field(tmp_path):
    path = tmp_path / "d.toml"
    path.write_text("[policy]\nd_in = 3\n[run]\nchunks = 20\n")
    sc = load_scenario(path)
    assert isinstance(sc.policy, PhasePP)
    assert sc.policy.d_in == 3 and sc.policy.recompute == "r0a"  # the rest: the default's
    assert sc.run.chunks == 20 and sc.run.warmup == 10


def test_a_given_table_replaces_the_default_one():
    merged = merge_over_default({"costs": {"denoise": 10.0, "decode": 5.0}})
    assert merged["costs"] == {"denoise": 10.0, "decode": 5.0}
    assert "name" not in merged and merged["policy"]["name"] == "phase_pp"
