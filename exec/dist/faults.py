"""Faults to inject into a dist replay (``--inject``), each exercising one failure path.

The threads executor's ``PHASE:CHUNK`` / ``STAGE:PHASE:CHUNK`` (a kernel raising) keeps
its meaning; dist adds kinds named in :data:`FAULT_KINDS`::

    hang:[WHERE:]PHASE:CHUNK          the kernel never returns
    kill:[WHERE:]PHASE:CHUNK          the rank dies (SIGKILL) at that kernel call
    wrong_group:[WHERE:]PHASE:CHUNK   the kernel's collective aims at the world group
    bad_version:QUEUE:CHUNK           the frame carrying that chunk has wire version 99
    missing_tensor:QUEUE:CHUNK        ... is missing the last tensor its payload needs

``WHERE`` is a stage of the policy (its rank group's leader) or ``rankN``; without it a
kernel fault fires on every group leader that runs the phase. Wire faults fire on the
queue's sending rank.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

from pipefill.exec.dist.config import RankPlan
from pipefill.exec.dist.layout import RankLayout
from pipefill.exec.dist.tp import Collectives
from pipefill.exec.dist.wire import WIRE_VERSION, Frame, Header
from pipefill.exec.errors import ExecConfigError
from pipefill.exec.kernels.registry import Fault, FaultyKernels
from pipefill.sim.program.actions import Compute


@dataclass(frozen=True)
class FaultKind:
    """``target``: ``kernel`` (PHASE names a phase) or ``wire`` (it names a queue)."""

    target: str
    help: str


#: --inject kind -> what it targets (the registry; CLI help and errors come from it)
FAULT_KINDS: dict[str, FaultKind] = {
    "raise": FaultKind("kernel", "the kernel raises"),
    "hang": FaultKind("kernel", "the kernel never returns"),
    "kill": FaultKind("kernel", "the rank is killed (SIGKILL)"),
    "wrong_group": FaultKind("kernel", "the kernel's collective aims at the world group"),
    "bad_version": FaultKind("wire", "the frame of that chunk has a wrong wire version"),
    "missing_tensor": FaultKind("wire", "the frame of that chunk lacks a tensor"),
}


@dataclass(frozen=True)
class DistFault:
    """One injected fault: ``kind`` at ``name`` (phase or queue) of ``chunk`` on ``where``."""

    kind: str
    name: str
    chunk: int
    where: str | None = None

    @classmethod
    def parse(cls, text: str) -> DistFault:
        head = text.split(":", 1)[0]
        if head not in FAULT_KINDS:
            plain = Fault.parse(text)  # PHASE:CHUNK or STAGE:PHASE:CHUNK: raises
            return cls("raise", plain.phase, plain.chunk, plain.stage)
        parts = text.split(":")[1:]
        if len(parts) not in (2, 3) or not parts[-1].strip().isdigit():
            raise ExecConfigError("--inject", f"{text!r} is not {head}:[WHERE:]NAME:CHUNK "
                                  f"(e.g. {head}:rank1:denoise:2)")
        fault = cls(head, parts[-2], int(parts[-1]), parts[0] if len(parts) == 3 else None)
        if fault.target == "wire" and fault.where is not None:
            raise ExecConfigError("--inject", f"{head} names a queue and a chunk "
                                  f"(e.g. {head}:q_in:2); it fires on the queue's sender")
        return fault

    @property
    def target(self) -> str:
        return FAULT_KINDS[self.kind].target

    def on_rank(self, plan: RankPlan) -> bool:
        """Whether this kernel fault fires on ``plan``'s rank: a stage (or none) means
        the group leaders (the stage's representative), ``rankN`` that rank only."""
        if self.where is None or self.where == plan.stage:
            return plan.leader
        return self.where == f"rank{plan.rank}"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "chunk": self.chunk, "where": self.where}


class DistFaultKernels:
    """Wraps a rank's kernels; at the chosen call it hangs, dies or misroutes."""

    def __init__(self, inner: Any, fault: DistFault, coll: Collectives | None) -> None:
        self.inner, self.fault, self.coll = inner, fault, coll

    def run(self, action: Compute) -> Any:
        f = self.fault
        if action.phase == f.name and action.tag.chunk == f.chunk:
            KERNEL_FAULTS[f.kind](self)
        return self.inner.run(action)

    def _hang(self) -> None:
        threading.Event().wait()  # a kernel stuck for good: nothing ever sets this

    def _kill(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def _misroute(self) -> None:
        if self.coll is not None:
            self.coll.misroute()


KERNEL_FAULTS = {"hang": DistFaultKernels._hang, "kill": DistFaultKernels._kill,
                 "wrong_group": DistFaultKernels._misroute}


def wrap_kernels(kernels: Any, fault: DistFault | None, plan: RankPlan,
                 coll: Collectives | None) -> Any:
    """``kernels`` with ``fault`` applied when it is a kernel fault for this rank."""
    if fault is None or fault.target != "kernel" or not fault.on_rank(plan):
        return kernels
    if fault.kind == "raise":
        return FaultyKernels(kernels, Fault(fault.name, fault.chunk, plan.stage))
    return DistFaultKernels(kernels, fault, coll)


def check_fault(fault: DistFault | None, layout: RankLayout, queues: list[str]) -> None:
    """Refuse faults that cannot fire in this run (exit 2)."""
    if fault is None:
        return
    if fault.kind == "wrong_group" and not any(g.sharded for g in layout.groups):
        raise ExecConfigError("--inject", "wrong_group needs a mesh collective "
                              "(--mesh-size >= 2 on a policy with a tensor-parallel stage)")
    places = [*layout.stages(), *(f"rank{r}" for r in range(layout.world))]
    if fault.where is not None and fault.where not in places:
        raise ExecConfigError("--inject", f"{fault.where!r} is not a stage or rank of this "
                              f"run (allowed: {', '.join(places)})")
    if fault.target == "wire" and fault.name not in queues:
        raise ExecConfigError("--inject", f"{fault.kind}: unknown queue {fault.name!r} "
                              f"(allowed: {', '.join(queues)})")


def wire_corruptor(fault: DistFault | None, sends: frozenset[str]) -> Any:
    """A frame tamperer for this rank's outgoing link frames (identity if none)."""
    if fault is None or fault.target != "wire" or fault.name not in sends:
        return lambda frame: frame

    def corrupt(frame: Frame) -> Frame:
        h = frame.header
        if frame.body.get("queue") != fault.name or h.chunk != fault.chunk \
                or h.action not in ("infer", "shutdown"):
            return frame
        if fault.kind == "bad_version":
            return Frame(Header(h.action, h.seq, h.call_id, h.chunk, h.epoch, h.body_len,
                                WIRE_VERSION + 98), frame.body, frame.tensors)
        return Frame(h, frame.body, frame.tensors[:-1])

    return corrupt
