"""layer_pp and stream_batch share their block split (BlockSplitPolicy)."""

from __future__ import annotations

import pytest

from pipefill.sim.errors import ScenarioError
from pipefill.sim.policies import POLICIES, make_policy
from pipefill.sim.policies.block_split import BlockSplitPolicy
from tests.helpers.scenarios import make_scenario

NAMES = ["layer_pp", "stream_batch"]
COSTS = {"denoise": {"mean": 3.0, "steps": 2}, "decode": 1.0}


@pytest.mark.parametrize("name", NAMES)
def test_both_are_block_split_policies_with_one_validation(name):
    assert issubclass(POLICIES[name], BlockSplitPolicy)
    with pytest.raises(ScenarioError, match=r"^policy\.blocks: needs at least one block per "
                                            r"stage \(3 stages\)"):
        make_policy({"name": name, "stages": 3, "blocks": 2})
    with pytest.raises(ScenarioError, match=r"^policy\.split: .*covers 5 blocks, not the "
                                            r"model's 6"):
        make_policy({"name": name, "stages": 2, "blocks": 6, "split": [2, 3]})


@pytest.mark.parametrize("name", NAMES)
def test_split_shares_stages_and_bytes(name):
    sc = make_scenario({"name": name, "stages": 3, "blocks": 7}, COSTS)
    p = sc.policy
    assert isinstance(p, BlockSplitPolicy)
    assert p.block_counts(sc) == [3, 2, 2]  # the first stages take the remainder
    assert p.shares(sc) == [3 / 7, 2 / 7, 2 / 7]
    assert p.stages(sc) == ("stage0", "stage1", "stage2")
    assert p.params()["stages"] == 3 and "n_stages" not in p.params()
    assert p.act_bytes(sc) == sc.transport.result_size
    sc2 = make_scenario({"name": name, "split": [1, 29], "activation_bytes": 5}, COSTS)
    p2 = sc2.policy
    assert isinstance(p2, BlockSplitPolicy)
    assert p2.shares(sc2) == [1 / 30, 29 / 30] and p2.act_bytes(sc2) == 5
