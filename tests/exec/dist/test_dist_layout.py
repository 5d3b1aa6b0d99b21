"""The rank layout of `replay --backend dist` comes from the policy object: one rank
group per stage (a mesh for a tensor-parallel stage), one link per pair of leaders
carrying the queues between them; what cannot run says why in one line (exit 2)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.exec.dist.config import DistOptions, RankPlan
from pipefill.exec.dist.layout import derive_layout
from pipefill.exec.errors import ExecConfigError
from pipefill.sim.policies.serial import Serial
from pipefill.sim.scenario.model import Scenario
from tests.helpers.scenarios import make_scenario

COSTS = {"build": {"mean": 1.0}, "denoise": {"mean": 2.0, "steps": 2},
         "decode": {"mean": 1.0}, "encode": {"mean": 1.0}}
runner = CliRunner()


def _sc(policy: dict[str, Any], **run: Any) -> Scenario:
    return make_scenario(policy, COSTS, chunks=6, **run)


def _links(sc: Scenario, mesh: int = 1) -> dict[tuple[int, int], dict[str, str | None]]:
    lay = derive_layout(sc, mesh)
    return {ln.ranks: dict(zip(ln.queues, ln.roles, strict=True)) for ln in lay.links}


def test_a_stream_batch_ring_is_one_rank_per_stage_with_the_loop_back_to_rank0():
    sc = _sc({"name": "stream_batch", "stages": 4, "blocks": 8, "steps": 2})
    lay = derive_layout(sc, 1)
    assert [(g.stage, g.ranks) for g in lay.groups] == [
        ("stage0", (0,)), ("stage1", (1,)), ("stage2", (2,)), ("stage3", (3,))]
    assert _links(sc) == {(0, 1): {"act0": "activation"}, (1, 2): {"act1": "activation"},
                          (2, 3): {"act2": "activation"}, (0, 3): {"loop": "result"}}
    assert lay.rank_names() == ["stage0", "stage1", "stage2", "stage3"]


def test_two_stages_share_one_link_for_both_directions():
    sc = _sc({"name": "layer_pp", "stages": 2, "blocks": 4, "items": 2})
    assert _links(sc) == {(0, 1): {"act0": "activation", "flush": "control"}}


def test_the_generator_stage_becomes_a_mesh_and_its_leader_holds_the_links():
    sc = _sc({"name": "phase_pp"})
    lay = derive_layout(sc, 3)
    assert [(g.stage, g.ranks) for g in lay.groups] == [("stage0", (0,)),
                                                        ("stage1", (1, 2, 3))]
    assert _links(sc, 3) == {(0, 1): {"q_in": "envelope", "q_out": "result"}}
    assert lay.rank_names() == ["stage0", "stage1 (mesh leader)", "stage1 (mesh follower)",
                                "stage1 (mesh follower)"]
    plan = RankPlan(3, lay)
    assert (plan.stage, plan.leader, plan.others) == ("stage1", False, [1, 2, 3])


def test_a_front_end_per_session_is_a_rank_per_session_linked_to_the_mesh_leader():
    sc = _sc({"name": "multi_session", "stage0": "per_session", "max_batch": 2}, sessions=2)
    lay = derive_layout(sc, 2)
    assert [(g.stage, g.ranks) for g in lay.groups] == [
        ("stage0.0", (0,)), ("stage0.1", (1,)), ("stage1", (2, 3))]
    assert _links(sc, 2) == {(0, 2): {"q_in.0": "envelope", "q_out.0": "result"},
                             (1, 2): {"q_in.1": "envelope", "q_out.1": "result"}}
    assert [sc.policy.source_stage(sc, s) for s in range(2)] == ["stage0.0", "stage0.1"]


def test_a_rolling_windows_local_buffer_stays_on_its_rank():
    sc = _sc({"name": "rolling_window", "window": 2})
    assert _links(sc) == {(0, 1): {"q_in": "envelope", "q_out": "result"}}


def test_a_mesh_size_for_a_policy_without_a_tensor_parallel_stage_is_one_line():
    sc = _sc({"name": "stream_batch", "stages": 3, "blocks": 6})
    with pytest.raises(ExecConfigError) as info:
        derive_layout(sc, 2)
    assert str(info.value) == (
        "--mesh-size: policy stream_batch has no tensor-parallel stage (it runs 3 stages, "
        "one rank each); use --mesh-size 1")


class _NoRanks(Serial):
    """A serial policy that says it cannot run on ranks (its hook, not a name list)."""

    name: ClassVar[str] = "serial"

    def dist_refusal(self, sc: Scenario) -> str | None:
        return "its stages share one buffer in memory"


def test_a_policy_refuses_through_its_own_hook():
    sc = _sc({"name": "serial"})
    refusing = sc.model_copy(update={"policy": _NoRanks()})
    with pytest.raises(ExecConfigError) as info:
        DistOptions().check(refusing, "cpu")
    assert str(info.value) == (
        "policy.name: serial cannot run on --backend dist: its stages share one buffer in "
        "memory")
    assert derive_layout(sc, 1).world == 2  # the plain policy has no such reason


def test_world_size_is_checked_against_the_derived_layout():
    sc = _sc({"name": "layer_pp", "stages": 3, "blocks": 6})
    assert DistOptions(world_size=3).check(sc, "cpu").world == 3
    with pytest.raises(ExecConfigError) as info:
        DistOptions(world_size=2).check(sc, "cpu")
    assert str(info.value) == ("--world-size: 2 ranks, but policy layer_pp (--mesh-size 1) "
                               "runs stage0 on rank0; stage1 on rank1; stage2 on rank2 = 3 "
                               "ranks")


@pytest.mark.parametrize("args,line", [
    (["--set", "policy.name=stream_batch", "--set", "policy.stages=3", "--mesh-size", "2"],
     "error: --mesh-size: policy stream_batch has no tensor-parallel stage (it runs 3 "
     "stages, one rank each); use --mesh-size 1\n"),
    (["--set", "policy.name=stream_batch", "--set", "policy.stages=3", "--world-size", "4"],
     "error: --world-size: 4 ranks, but policy stream_batch (--mesh-size 1) runs stage0 on "
     "rank0; stage1 on rank1; stage2 on rank2 = 3 ranks\n"),
    (["--set", "policy.name=layer_pp", "--inject", "hang:stage7:denoise:1"],
     "error: --inject: 'stage7' is not a stage or rank of this run (allowed: stage0, stage1, "
     "rank0, rank1)\n"),
])
def test_a_layout_mismatch_on_the_command_line_is_one_line_and_exit_2(tmp_path, args, line):
    out = tmp_path / "m.parquet"
    res = runner.invoke(app, ["replay", "--set", "run.chunks=4", "--set", "run.warmup=1", *args,
                              "--backend", "dist",
                              "--out", str(out)])
    # a policy switched by --set is noted first (the fields it drops), then one error line
    errors = [ln for ln in res.stderr.splitlines(keepends=True) if not ln.startswith("note:")]
    assert (res.exit_code, errors) == (2, [line])
    assert not out.exists()
