"""The rank layout of a dist replay, derived from the policy object itself.

Every stage the policy names (``policy.stages(scenario)``) becomes a *rank group*: one
rank, or, for a stage the policy lets run tensor-parallel (``sharded_stages``), a mesh
of ``--mesh-size`` ranks whose first rank is the *leader*. Groups take consecutive
ranks in the policy's stage order, so rank0 runs the first stage (it also hosts the
rendezvous, is every clock's reference and writes the trace). Every queue whose ends
are on two stages is carried by a point-to-point *link* between the two groups'
leaders; the queues between one pair of leaders share one link. A queue's ends on one
stage stay local to its rank.

Nothing here knows a policy or a stage by name: the stages, queues, the sharded stages
and a reason to refuse come from the policy's hooks. Every check raises
:class:`ExecConfigError` (exit 2, nothing started).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipefill.exec.errors import ExecConfigError
from pipefill.sim.program.actions import QueueSpec
from pipefill.sim.scenario.load import Scenario


@dataclass(frozen=True)
class RankGroup:
    """One stage on its ranks: ``ranks[0]`` is the leader (it runs the stage's programs
    against the world); the others, if any, are mesh followers replaying its results."""

    stage: str
    ranks: tuple[int, ...]

    @property
    def leader(self) -> int:
        return self.ranks[0]

    @property
    def sharded(self) -> bool:
        return len(self.ranks) > 1

    def describe(self) -> str:
        if not self.sharded:
            return f"{self.stage} on rank{self.leader}"
        return (f"{self.stage} on ranks {self.ranks[0]}-{self.ranks[-1]} (tensor-parallel, "
                f"leader rank{self.leader})")


@dataclass(frozen=True)
class LinkSpec:
    """A point-to-point link between two group leaders (``ranks`` ascending) carrying
    ``queues`` (both directions); ``roles``: queue -> what it carries (the policy's
    ``queue_role``, None when unknown)."""

    ranks: tuple[int, int]
    queues: tuple[str, ...]
    roles: tuple[str | None, ...] = ()

    def peer(self, rank: int) -> int:
        a, b = self.ranks
        return b if rank == a else a


@dataclass(frozen=True)
class RankLayout:
    """The groups (in rank order) and links of one run.

    Invariants: the groups cover ranks 0..world-1 exactly once; each link joins two
    distinct leaders; every transported queue between two stages is on exactly one link.
    """

    policy: str
    groups: tuple[RankGroup, ...]
    links: tuple[LinkSpec, ...]

    @property
    def world(self) -> int:
        return sum(len(g.ranks) for g in self.groups)

    def group_of(self, rank: int) -> RankGroup:
        return next(g for g in self.groups if rank in g.ranks)

    def group_named(self, stage: str) -> RankGroup:
        return next(g for g in self.groups if g.stage == stage)

    def links_of(self, rank: int) -> tuple[LinkSpec, ...]:
        return tuple(ln for ln in self.links if rank in ln.ranks)

    def stages(self) -> tuple[str, ...]:
        return tuple(g.stage for g in self.groups)

    def describe(self) -> str:
        return "; ".join(g.describe() for g in self.groups)

    def rank_names(self) -> list[str]:
        """Per rank: its stage, and its part in a mesh."""
        out = []
        for rank in range(self.world):
            g = self.group_of(rank)
            role = "" if not g.sharded else (" (mesh leader)" if rank == g.leader
                                              else " (mesh follower)")
            out.append(f"{g.stage}{role}")
        return out

    def as_meta(self) -> dict[str, object]:
        return {"groups": [{"stage": g.stage, "ranks": list(g.ranks)} for g in self.groups],
                "links": [{"ranks": list(ln.ranks), "queues": dict(zip(ln.queues, ln.roles,
                                                                       strict=True))}
                          for ln in self.links]}


def derive_layout(sc: Scenario, mesh_size: int) -> RankLayout:
    """The layout of ``sc``'s policy with sharded stages on ``mesh_size`` ranks each."""
    pol = sc.policy
    why = pol.dist_refusal(sc)
    if why is not None:
        raise ExecConfigError("policy.name", f"{pol.name} cannot run on --backend dist: {why}")
    if mesh_size < 1:
        raise ExecConfigError("--mesh-size", f"must be >= 1 (got {mesh_size})")
    stages = tuple(pol.stages(sc))
    sharded = set(pol.sharded_stages(sc)) & set(stages)
    if mesh_size > 1 and not sharded:
        raise ExecConfigError("--mesh-size", f"policy {pol.name} has no tensor-parallel "
                              f"stage (it runs {len(stages)} stages, one rank each); use "
                              "--mesh-size 1")
    _check_programs(sc, stages, sharded if mesh_size > 1 else set())
    groups, rank = [], 0
    for stage in stages:
        size = mesh_size if stage in sharded else 1
        groups.append(RankGroup(stage, tuple(range(rank, rank + size))))
        rank += size
    leader = {g.stage: g.leader for g in groups}
    return RankLayout(pol.name, tuple(groups), _links(sc, pol.queues(sc), leader))


def _check_programs(sc: Scenario, stages: tuple[str, ...], meshes: set[str]) -> None:
    runs = [sp.stage for sp in sc.policy.programs(sc)]
    for stage in stages:
        if stage not in runs:
            raise ExecConfigError("policy.name", f"{sc.policy.name} names stage {stage} "
                                  "but runs no program on it")
        if stage in meshes and runs.count(stage) != 1:
            raise ExecConfigError("--mesh-size", f"{stage} runs {runs.count(stage)} "
                                  "programs; a tensor-parallel mesh replays exactly one")
    stray = sorted(set(runs) - set(stages))
    if stray:
        raise ExecConfigError("policy.name", f"{sc.policy.name} runs a program on "
                              f"{stray[0]}, which is not one of its stages")


def _links(sc: Scenario, specs: list[QueueSpec], leader: dict[str, int]
           ) -> tuple[LinkSpec, ...]:
    by_pair: dict[tuple[int, int], list[QueueSpec]] = {}
    for spec in specs:
        if spec.src == spec.dst:
            continue
        if not spec.transport:
            raise ExecConfigError("policy.name", f"queue {spec.name} is a local buffer "
                                  f"between two stages ({spec.src}, {spec.dst}): it "
                                  "cannot cross ranks")
        a, b = sorted((leader[spec.src], leader[spec.dst]))
        by_pair.setdefault((a, b), []).append(spec)
    return tuple(LinkSpec(pair, tuple(s.name for s in qs),
                          tuple(sc.policy.queue_role(sc, s.name) for s in qs))
                 for pair, qs in sorted(by_pair.items()))
