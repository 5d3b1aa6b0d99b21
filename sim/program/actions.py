"""Actions: the instruction set that policy programs yield and backends interpret.

A *program* is a Python generator bound to one stage. It yields :class:`Action` objects
and receives each action's result back (``msg = yield Get("q_in")``). A backend
interprets every action type through one method each (visitor pattern:
``action.accept(backend)`` calls ``backend.on_get(action)``), so the SimPy engine and
the torch executor run *the same* program and no policy logic is written twice.

Queue semantics (DESIGN.md): a slot is taken by :class:`Reserve` before the producer
starts the work that fills it and is freed by :class:`Release` when the consumer has
*finished* with the item, so a queue's depth counts items being built, in transit,
waiting and being consumed. :class:`Put` is asynchronous: the message travels on the
link's transport lane and becomes visible to :class:`Get` when it arrives.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipefill.traces.recorder import NO_TAG, Tag

#: message kinds travelling on queues
INFER, SHUTDOWN = "infer", "shutdown"


@dataclass(frozen=True)
class Message:
    """An envelope (stage0 -> stage1) or result (stage1 -> stage0).

    ``nbytes`` sizes transport; ``payload`` is whatever the backend's kernels produced
    (None in the simulator, tensors in the executor). ``init_cache`` marks the first
    envelope of an epoch (the generator resets its KV cache); ``recompute`` asks the
    generator to run the recompute pass before denoising.
    """

    kind: str
    tag: Tag
    nbytes: int = 0
    init_cache: bool = False
    recompute: bool = False
    payload: Any = None

    @property
    def is_shutdown(self) -> bool:
        return self.kind == SHUTDOWN

    def carrying(self, payload: Any) -> Message:
        """This message with ``payload`` (itself when the payload is the same object, as
        in the simulator, where payloads are None)."""
        if payload is self.payload:
            return self
        return Message(self.kind, self.tag, self.nbytes, self.init_cache, self.recompute,
                       payload)


@dataclass(frozen=True)
class StateView:
    """Read-only snapshot of the shared state a program may base a choice on.

    ``free``: free slots per queue; ``ready``: arrived, not yet taken items per queue;
    ``inputs``: inputs available so far per session; ``version`` increases on every
    change, so ``WaitChange(view.version)`` cannot miss a wake-up.
    """

    version: int
    now_ms: float
    free: Mapping[str, int]
    ready: Mapping[str, int]
    inputs: Mapping[int, int]


class Backend(Protocol):
    """What an interpreter of programs provides: one handler per action type.

    The SimPy engine returns generators of SimPy events from each handler; a blocking
    executor returns the result directly. Either way the driver hands the result back
    to the program.
    """

    def on_compute(self, action: Compute) -> Any: ...
    def on_reserve(self, action: Reserve) -> Any: ...
    def on_put(self, action: Put) -> Any: ...
    def on_get(self, action: Get) -> Any: ...
    def on_release(self, action: Release) -> Any: ...
    def on_flush(self, action: Flush) -> Any: ...
    def on_poll(self, action: Poll) -> Any: ...
    def on_wait_change(self, action: WaitChange) -> Any: ...
    def on_wait_input(self, action: WaitInput) -> Any: ...
    def on_mark(self, action: Mark) -> Any: ...


class Action:
    """Base class. ``describe`` is used in stall and fault reports."""

    def accept(self, backend: Backend) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class Compute(Action):
    """Run ``phase`` for ``tag`` on this program's stage (a span on its compute lane).

    ``inputs`` is passed to the backend's kernel (payloads of earlier work); the result
    of the action is the kernel's output (None in the simulator).

    ``batch``: the items of one batched call (``tag`` is the first of them); empty means
    the single item ``tag``. A batched call is one span per item on the stage, all with
    the call's start and end. ``share``: the fraction of the phase's model this call runs
    (a stage's slice of the DiT blocks). ``CostTable.duration`` prices both; the defaults
    price exactly as before. ``blocks``: which slice that is, ``(start, end)`` as
    fractions of the model's blocks (``end - start == share``), so a backend running a
    real model runs those blocks; None: the whole model.
    """

    phase: str
    tag: Tag
    inputs: Any = field(default=None, compare=False)
    batch: tuple[Tag, ...] = ()
    share: float = 1.0
    blocks: tuple[float, float] | None = None

    @property
    def items(self) -> tuple[Tag, ...]:
        """The tags this call works on (``batch``, or just ``tag``)."""
        return self.batch or (self.tag,)

    def accept(self, backend: Backend) -> Any:
        return backend.on_compute(self)

    def describe(self) -> str:
        more = f" batch={len(self.batch)}" if len(self.batch) > 1 else ""
        return f"compute {self.phase} chunk={self.tag.chunk} step={self.tag.step}{more}"


@dataclass(frozen=True)
class Reserve(Action):
    """Block until ``queue`` has a free slot and take it."""

    queue: str

    def accept(self, backend: Backend) -> Any:
        return backend.on_reserve(self)

    def describe(self) -> str:
        return f"reserve {self.queue}"


@dataclass(frozen=True)
class Put(Action):
    """Send ``message`` into an already reserved slot of ``queue``; returns at once."""

    queue: str
    message: Message

    def accept(self, backend: Backend) -> Any:
        return backend.on_put(self)

    def describe(self) -> str:
        return f"put {self.queue} chunk={self.message.tag.chunk}"


@dataclass(frozen=True)
class Get(Action):
    """Block until an item has arrived on ``queue``; take the oldest (FIFO).

    ``wait``: the name of this wait on the trace's wait lane when it is not the plain
    ``get:<queue>`` (a batch boundary: ``fill:<queue>``, ``drain:<queue>``; see
    :mod:`pipefill.traces.waits`).
    """

    queue: str
    wait: str = ""

    def accept(self, backend: Backend) -> Any:
        return backend.on_get(self)

    def describe(self) -> str:
        return f"get {self.queue}"


@dataclass(frozen=True)
class Release(Action):
    """Free one slot of ``queue`` (the consumer finished its item)."""

    queue: str

    def accept(self, backend: Backend) -> Any:
        return backend.on_release(self)

    def describe(self) -> str:
        return f"release {self.queue}"


@dataclass(frozen=True)
class Flush(Action):
    """Remove every arrived, not yet taken item of ``queue``, free their slots, return them."""

    queue: str

    def accept(self, backend: Backend) -> Any:
        return backend.on_flush(self)

    def describe(self) -> str:
        return f"flush {self.queue}"


@dataclass(frozen=True)
class Poll(Action):
    """Return a :class:`StateView` snapshot without waiting."""

    def accept(self, backend: Backend) -> Any:
        return backend.on_poll(self)

    def describe(self) -> str:
        return "poll"


@dataclass(frozen=True)
class WaitChange(Action):
    """Block until the shared state's version differs from ``version``.

    ``timeout_ms``: also return once that much time has passed (a batching window); None
    waits for the change only. ``on``: what the program is waiting for, in the wait
    lane's words (``slot:q_in|get:q_out``: whichever comes first; empty: any change),
    and ``tag`` the work it waits to do; both only name the wait in the trace.
    """

    version: int
    timeout_ms: float | None = None
    on: str = ""
    tag: Tag = NO_TAG

    def accept(self, backend: Backend) -> Any:
        return backend.on_wait_change(self)

    def describe(self) -> str:
        limit = f" (at most {self.timeout_ms:g} ms)" if self.timeout_ms is not None else ""
        return f"wait for a state change after version {self.version}{limit}"


@dataclass(frozen=True)
class WaitInput(Action):
    """Block until the input of ``tag``'s chunk is available; records the ``input`` mark.

    With a saturated source the input is available as soon as it is asked for.
    """

    tag: Tag

    def accept(self, backend: Backend) -> Any:
        return backend.on_wait_input(self)

    def describe(self) -> str:
        return f"wait input chunk={self.tag.chunk}"


@dataclass(frozen=True)
class Mark(Action):
    """Record an instant event (``emit``, ``hard_cut``, ``drop``) now."""

    name: str
    tag: Tag

    def accept(self, backend: Backend) -> Any:
        return backend.on_mark(self)

    def describe(self) -> str:
        return f"mark {self.name} chunk={self.tag.chunk}"


#: what a policy program is: yields actions, receives their results
Program = Generator[Action, Any, Any]


@dataclass(frozen=True)
class QueueSpec:
    """A bounded queue (link) between two stages.

    ``capacity`` is D_in or D_out; ``src``/``dst`` name the producing and consuming
    stages; transport of a message takes latency + bytes / bandwidth on the ``src``
    stage's comm lane. ``transport = False`` makes it a local buffer (a rolling window's
    resident chunks): a Put is visible at once and uses no lane, but its bytes still
    count as memory in flight.
    """

    name: str
    capacity: int
    src: str
    dst: str
    transport: bool = True


@dataclass(frozen=True)
class StageProgram:
    """A program bound to the stage that runs it."""

    stage: str
    program: Program
