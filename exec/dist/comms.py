"""A rank's transport, wired from the layout: its links, its mesh broadcast, its state.

:class:`RankComms` owns every comms thread of one rank (one :class:`LinkChannel` per
link of its group's leader, plus a :class:`CastChannel` on the leader of a mesh of
several ranks, or a :class:`FollowChannel` on a follower) and routes each frame its
state submits to the link that carries the frame's queue. :func:`open_comms` builds
it and the rank's state (:class:`DistState` on a leader, :class:`FollowerState` on a
follower) and joins them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pipefill.exec.dist.comms_thread import DeviceHandoff, Hooks, LinkChannel, LinkConfig
from pipefill.exec.dist.config import RankPlan
from pipefill.exec.dist.link import MeshCast, PeerLink
from pipefill.exec.dist.mesh_comms import CastChannel, FollowChannel
from pipefill.exec.dist.rendezvous import Groups
from pipefill.exec.dist.state import DistState, FollowerState, RankWiring
from pipefill.exec.dist.trace import DrainRecorder, Row
from pipefill.exec.dist.wire import Frame
from pipefill.exec.threads.runtime import Runtime
from pipefill.sim.program.actions import QueueSpec
from pipefill.sim.scenario.load import Scenario


@dataclass(frozen=True)
class CommsSettings:
    """``poll_s``: how long an idle link waits for work before a keep-alive ``noop``;
    ``timeout_s``: the run's timeout (every wait's bound; a mesh broadcast keeps alive
    within a quarter of it); ``offset_ms``: rank0's clock minus this rank's."""

    poll_s: float
    timeout_s: float
    grace_s: float
    offset_ms: float = 0.0


class RankComms:
    """Every comms thread of one rank.

    Invariant: each queue this rank sends or receives across ranks is on exactly one of
    ``links`` (``route``); ``closed`` is set once every thread has ended.
    """

    def __init__(self, hooks: Hooks, links: list[LinkChannel], cast: CastChannel | None,
                 follow: FollowChannel | None) -> None:
        self.hooks, self.links, self.cast, self.follow = hooks, links, cast, follow
        self.route = {q: ch for ch in links for q in ch.cfg.sends | ch.cfg.receives}
        self.channels = [*links, *(c for c in (cast, follow) if c is not None)]
        self.closed = threading.Event()

    def submit(self, queue: str, frame: Frame, ready: Any) -> None:
        self.route[queue].outbox.put(frame, ready)

    def filler(self, queue: str, nbytes: int) -> torch.Tensor:
        return self.route[queue].filler(nbytes)

    def start(self) -> None:
        for ch in self.channels:
            ch.thread.start()
        threading.Thread(target=self._watch_closed, daemon=True,
                         name="pipefill-comms-closed").start()

    def _watch_closed(self) -> None:
        for ch in self.channels:
            ch.closed.wait()
        self.closed.set()

    def received(self) -> dict[int, list[Row]]:
        """Rows each peer shipped on its link (rank0: the leaders linked to it)."""
        return {ch.cfg.peer: ch.received for ch in self.links if ch.received}


def link_device(runtime: Runtime, backend: str) -> torch.device:
    """Where a link's tensors travel: the GPU for NCCL, the host for gloo."""
    return runtime.device if backend == "nccl" else torch.device("cpu")


def open_comms(sc: Scenario, plan: RankPlan, groups: Groups, runtime: Runtime,
               rec: DrainRecorder, cancel: threading.Event, world_backend: str,
               cfg: CommsSettings) -> tuple[RankComms, DistState | FollowerState]:
    """This rank's comms threads (not started) and its state, wired to each other."""
    specs = sc.policy.queues(sc)
    hooks = Hooks()
    links = [] if plan.follower else _links(plan, specs, groups, runtime, rec, hooks, cancel,
                                            cfg)
    consumed = frozenset(s.name for s in specs if s.dst == plan.stage)
    cast = follow = None
    if groups.cast is not None:
        mesh = MeshCast(groups.cast, plan.group.leader, link_device(runtime, world_backend))
        if plan.leader:
            cast = CastChannel(hooks, rec, DeviceHandoff(runtime), mesh, cancel, consumed,
                               cfg.poll_s, min(1.0, cfg.timeout_s / 4))
        else:
            follow = FollowChannel(hooks, rec, DeviceHandoff(runtime), mesh, cancel,
                                   consumed, plan.group.leader)
    comms = RankComms(hooks, links, cast, follow)
    state = _state(sc, plan, comms, specs, runtime, rec, cfg)
    state.aborted = cancel
    hooks.state = state
    hooks.finished = lambda: state.live == 0
    return comms, state


def _links(plan: RankPlan, specs: list[QueueSpec], groups: Groups, runtime: Runtime,
           rec: DrainRecorder, hooks: Hooks, cancel: threading.Event,
           cfg: CommsSettings) -> list[LinkChannel]:
    here, by_name = plan.stage, {s.name: s for s in specs}
    out = []
    for ln in plan.layout.links_of(plan.rank):
        peer = ln.peer(plan.rank)
        group, backend = groups.links[peer]
        sends = frozenset(q for q in ln.queues if by_name[q].src == here)
        receives = frozenset(q for q in ln.queues if by_name[q].dst == here)
        link_cfg = LinkConfig(plan.rank, peer, sends, receives, cfg.poll_s, cfg.offset_ms,
                              ship_rows=peer == 0)
        link = PeerLink(group, peer, link_device(runtime, backend))
        out.append(LinkChannel(link_cfg, hooks, rec, DeviceHandoff(runtime), link, cancel))
    return out


def _state(sc: Scenario, plan: RankPlan, comms: RankComms, specs: list[QueueSpec],
           runtime: Runtime, rec: DrainRecorder,
           cfg: CommsSettings) -> DistState | FollowerState:
    wait_s = cfg.timeout_s + cfg.grace_s
    if plan.follower:
        return FollowerState(specs, rec, runtime.now_ms, wait_s)
    cast: Callable[[Frame, Any], None] | None = None
    if comms.cast is not None:
        cast = comms.cast.box.put
    wiring = RankWiring(comms.submit, cast, comms.filler,
                        lambda: runtime.now_ms() + cfg.offset_ms, bytes_counter=plan.rank == 0)
    run = sc.run
    return DistState(specs, plan.stage, wiring, run.sessions, run.chunks,
                     run.source == "saturated", rec, runtime.now_ms, wait_s)
