"""A rank's kernels under dist: the usual family, sharded over the mesh, plus faults.

Every rank builds the run's kernel family as the threads executor does (same seeds, so
the same weights). On a mesh of several ranks (a tensor-parallel stage) the model is
sharded (:class:`pipefill.exec.dist.tp.TPDiT`) and calibrated kernels get a per-call
mesh sync; both run their collectives through the guarded
:class:`pipefill.exec.dist.tp.Collectives`.
"""

from __future__ import annotations

import threading
from typing import Any

import torch.distributed as dist

from pipefill.exec.kernels.calibrated import in_stage_thread
from pipefill.exec.dist.config import RankPlan
from pipefill.exec.dist.faults import DistFault, wrap_kernels
from pipefill.exec.dist.rendezvous import Groups
from pipefill.exec.dist.tp import Collectives, MeshSync, TPDiT
from pipefill.exec.errors import ExecConfigError
from pipefill.exec.kernels.registry import KernelSetup, ModelFamily, make_family
from pipefill.exec.kernels.model import warm_up
from pipefill.exec.kernels.nn import MODEL_SIZES
from pipefill.exec.threads.replay import ReplayOptions
from pipefill.exec.threads.runtime import Runtime
from pipefill.sim.scenario.costs import CostTable
from pipefill.sim.scenario.model import Scenario


class CallTrackingKernels:
    """Kernels that remember the call in progress (for hang reports)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.action: Any = None
        self.last: Any = None

    def run(self, action: Any) -> Any:
        self.action = self.last = action
        try:
            return self.inner.run(action)
        finally:
            self.action = None


def check_tp(opts: ReplayOptions, mesh_size: int) -> None:
    """Model kernels shard attention heads over the mesh: the split must be even."""
    size = MODEL_SIZES.get(opts.model_size)
    if opts.kernels != "model" or mesh_size < 2 or size is None:
        return
    if size.heads % mesh_size:
        raise ExecConfigError("--mesh-size", f"model size {opts.model_size} has {size.heads} "
                              f"attention heads; tensor parallelism needs --mesh-size "
                              f"dividing {size.heads}")


def _all_reduce(t: Any, group: Any) -> None:
    dist.all_reduce(t, group=group)


def mesh_collectives(groups: Groups) -> Collectives | None:
    if groups.tp is None:
        return None
    named = {"mesh": groups.tp, "world": groups.world,
             **{f"link to rank{peer}": g for peer, (g, _) in groups.links.items()}}
    return Collectives(groups.tp, _all_reduce, named, wrong=groups.world)


def build_kernels(sc: Scenario, opts: ReplayOptions, plan: RankPlan, groups: Groups,
                  runtime: Runtime, cancel: threading.Event,
                  fault: DistFault | None) -> tuple[Any, dict[str, Any], Collectives | None]:
    """(CallTrackingKernels kernels of this rank's stage, the family's info for the
    metadata, the mesh's collectives on a mesh rank of a mesh of several)."""
    run = sc.run
    costs = CostTable(sc.costs, run.sessions, run.chunks, run.seed)
    setup = KernelSetup(sc, costs, runtime, opts.model_size, opts.calibration_path,
                        cancel=cancel)
    family = make_family(opts.kernels, setup)
    group = plan.group
    coll = mesh_collectives(groups) if group.sharded else None
    if coll is not None and isinstance(family, ModelFamily):
        bundle = family.bundle
        bundle.dit = TPDiT(bundle.dit, group.ranks.index(plan.rank), len(group.ranks), coll)
        in_stage_thread(runtime, lambda: warm_up(bundle))  # every mesh rank, in lockstep
    kernels: Any = family.for_stage(plan.stage)
    if coll is not None and not isinstance(family, ModelFamily):
        kernels = MeshSync(kernels, coll, runtime.device)
    info = dict(family.info)
    if coll is not None:
        info["tensor_parallel"] = len(group.ranks)
    return CallTrackingKernels(wrap_kernels(kernels, fault, plan, coll)), info, coll


def mesh_collectives_text(kernels: str, mesh_size: int) -> str | None:
    """What the mesh ranks synchronise on (None for a mesh of one rank)."""
    if mesh_size < 2:
        return None
    if kernels == "model":
        return f"tensor-parallel DiT over {mesh_size} ranks: 2 all-reduces per block"
    return f"one all-reduce per kernel call over {mesh_size} ranks"
