"""The policy interface: an immutable, validated object that compiles a scenario into programs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from pipefill.sim.errors import ScenarioError
from pipefill.sim.program.actions import QueueSpec, StageProgram

if TYPE_CHECKING:
    from pipefill.sim.graph.model import LowerBound
    from pipefill.sim.scenario.model import Scenario


#: what a queue carries (:meth:`Policy.queue_role`): envelopes into a generator, its
#: results, activations between slices of one model, or a token without payload
ENVELOPE, RESULT, ACTIVATION, CONTROL = "envelope", "result", "activation", "control"


class CallIds:
    """Globally monotonic ``call_id`` source shared by all programs of one run."""

    def __init__(self) -> None:
        self._next = itertools.count()

    def next(self) -> int:
        return next(self._next)


@dataclass(frozen=True)
class Order:
    """Whether a scenario's stages run a fixed order of actions, and why (or why not).

    ``fixed``: every stage's action list is the same under every timing, so one
    zero-time recording describes every run (the analytic bound is exact and the
    fast path may re-time it); otherwise a program chooses by reading the shared state
    and ``reason`` says which choice depends on timing.
    """

    fixed: bool
    reason: str


class Policy(BaseModel):
    """A scheduling policy: data (validated fields) plus a program per stage.

    Contract: :meth:`programs` returns fresh generators on every call, so one policy
    object can be run any number of times by any backend; the programs only talk to the
    world through :mod:`pipefill.sim.program.actions`. :meth:`check` raises
    ``ScenarioError`` naming the field when the scenario cannot run this policy (e.g. a
    missing phase cost).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str] = ""

    def stages(self, sc: Scenario) -> tuple[str, ...]:
        return ("stage0", "stage1")

    def queues(self, sc: Scenario) -> list[QueueSpec]:
        raise NotImplementedError

    def programs(self, sc: Scenario) -> list[StageProgram]:
        raise NotImplementedError

    def required_phases(self, sc: Scenario) -> tuple[str, ...]:
        """Phases whose cost the scenario must give."""
        return ("build", "denoise", "decode")

    def check(self, sc: Scenario) -> None:
        for phase in self.required_phases(sc):
            if sc.cost(phase) is None:
                raise ScenarioError(f"costs.{phase}", f"missing: policy {self.name} runs {phase}")
        if sc.run.sessions != 1 and not self.multi_session:
            raise ScenarioError("run.sessions", f"policy {self.name} runs 1 session "
                                f"(got {sc.run.sessions}); use multi_session")
        cuts = getattr(self, "hard_cuts", None) or []
        if any(c < 0 for c in cuts):
            raise ScenarioError("policy.hard_cuts", f"chunk {min(cuts)} is not a chunk "
                                "(chunks count from 0)")
        late = [c for c in cuts if c >= sc.run.chunks]
        if late:
            raise ScenarioError("policy.hard_cuts", f"chunk {late[0]} is beyond the run's last "
                                f"chunk {sc.run.chunks - 1} (run.chunks = {sc.run.chunks})")

    multi_session: ClassVar[bool] = False

    def order(self, sc: Scenario) -> Order:
        """Fixed order or not (see :class:`Order`); a policy whose programs choose overrides it."""
        return Order(True, "every stage runs a fixed order")

    def steady(self) -> Policy:
        """This policy without transients (hard cuts): what a steady-state bound models."""
        return self

    def fixed_form(self) -> Policy | None:
        """A fixed-order stand-in for a timing-dependent choice (a batching window
        replaced by full batches), whose bound is an estimate; None if there is none."""
        return None

    def levers(self, sc: Scenario) -> dict[str, str]:
        """What would move each cause of idle time, in this policy's own fields, for
        ``pipefill explain``'s verdict: keys are its categories (``dependency``,
        ``fill/drain bubbles``, ``stage imbalance``, ``source-bound``) or
        ``backpressure:<queue>``. Empty (the default): explain's generic words."""
        return {}

    def lower_bound(self) -> LowerBound | None:
        """An explicit lower-bound model for an order that depends on timing (and has no
        :meth:`fixed_form`): the bound is then labelled ``lower_bound``. None: the policy
        has none, so a timing-dependent order of it gets no bound."""
        return None

    def params(self) -> dict[str, Any]:
        return {"name": self.name, **self.model_dump(mode="json")}

    # -- hooks of the distributed executor (null defaults) -------------------------------
    def source_stage(self, sc: Scenario, session: int) -> str:
        """The stage where ``session``'s inputs arrive: the realtime source's ``input``
        marks name it, and a distributed run feeds the inputs on its rank. Default: the
        first stage."""
        return self.stages(sc)[0]

    def queue_role(self, sc: Scenario, queue: str) -> str | None:
        """What ``queue`` carries (ENVELOPE, RESULT, ACTIVATION or CONTROL), so a
        calibration can size a message whose bytes a trace did not record; None:
        unknown (sized as a result)."""
        return None

    def sharded_stages(self, sc: Scenario) -> tuple[str, ...]:
        """Stages whose work may run tensor-parallel over a mesh of ranks (each runs
        one program, which the mesh's other ranks replay in lockstep). Default: none."""
        return ()

    def dist_refusal(self, sc: Scenario) -> str | None:
        """Why this scenario cannot run one rank group per stage, or None if it can."""
        return None

    def structure_reads_costs(self) -> bool:
        """Whether :meth:`structure` reads cost values (a split balanced on them): a
        sweep's planner then keys structures by the cost values, else only by which
        phases there are and the denoise steps."""
        return False

    def structure(self, sc: Scenario) -> Any:
        """What the programs' actions depend on besides :meth:`params`, the run, the
        phases present and the transport sizes: a value derived from cost values (a
        split balanced on them). Part of the fast path's plan cache key, so two
        scenarios with equal keys record the very same actions. None: nothing."""
        return None
