"""Comms threads: on each rank, the threads that own all transport of a run.

Programs never touch torch.distributed: their Put/Release/Flush hand frames to an
:class:`Outbox`, and a comms thread moves them. Every link of the layout (two group
leaders, :mod:`pipefill.exec.dist.layout`) has one :class:`LinkChannel` on each end,
a thread running a lockstep exchange (one frame each way per round, a ``noop`` when
idle, see :mod:`pipefill.exec.dist.link`); links are independent, so a rank of a ring
receives from one neighbour while it sends to the other. The leader of a mesh also
broadcasts its program's results to the followers (:mod:`pipefill.exec.dist.mesh_comms`).
Every frame is validated before it is sent and after it is received
(:class:`pipefill.exec.dist.wire.Checker`). A link ends when both ends said ``bye``
(their programs finished), or at once after a ``fail`` either way.

The tensor-parallel collectives inside the model kernels are not transport: they run on
the compute thread, on their own process group (:mod:`pipefill.exec.dist.tp`). The clock
handshakes run before these threads start and after they ended, so they never share a link.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from pipefill.exec.dist.errors import error_line
from pipefill.exec.dist.link import PeerLink, noop
from pipefill.exec.dist.state import DistState, FollowerState
from pipefill.exec.dist.trace import DrainRecorder, Row, rows_from_json
from pipefill.exec.dist.wire import Checker, Frame, Header, WireError, frame_message
from pipefill.exec.threads.runtime import Runtime
from pipefill.exec.threads.state import QueuedMessage

Item = tuple[Frame, Any]  # a frame and the CUDA event its tensors are ready at (or None)
#: frame actions that carry queue messages (the work an error line names)
MESSAGES = ("infer", "shutdown")


class Outbox:
    """Frames waiting for the comms thread, in submission order (thread-safe)."""

    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._cond = threading.Condition()

    def put(self, frame: Frame, ready: Any) -> None:
        with self._cond:
            self._items.append((frame, ready))
            self._cond.notify()

    def take(self, wait_s: float) -> Item | None:
        with self._cond:
            if not self._items and wait_s > 0:
                self._cond.wait(wait_s)
            return self._items.popleft() if self._items else None

    def take_credits(self) -> list[list[Any]]:
        """Remove every waiting credit frame; return their ``[queue, call_ids]`` records
        (they ride on the next frame instead of costing a round each)."""
        with self._cond:
            credits = [f.body["credits"] for f, _ in self._items if f.action == "credit"]
            self._items = deque(i for i in self._items if i[0].action != "credit")
        return [c for batch in credits for c in batch]

    def take_all(self) -> list[Item]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items


class DeviceHandoff:
    """Device handoff around transport: CUDA waits on ready events and records done
    events on the comms thread's own stream; CPU does nothing."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.cuda = runtime.kind == "cuda"
        self.stream = torch.cuda.Stream(runtime.device) if self.cuda else None

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        if self.stream is None:
            with torch.inference_mode():
                yield
            return
        torch.cuda.set_device(self.runtime.device)
        with torch.cuda.stream(self.stream), torch.inference_mode():
            yield

    def before_send(self, ready: Any) -> None:
        if self.stream is not None and ready is not None:
            self.stream.wait_event(ready)

    def after_receive(self, frame: Frame) -> tuple[Frame, Any]:
        if self.stream is None or not frame.tensors:
            return frame, None
        moved = tuple(t.to(self.runtime.device, non_blocking=True) for t in frame.tensors)
        done = torch.cuda.Event()
        done.record(self.stream)
        return Frame(frame.header, frame.body, moved), done


@dataclass
class Hooks:
    """What every comms thread of a rank reports to and reads from (set before start):
    ``fail(line)`` a local failure; ``remote_fail(line)`` one another rank reported;
    ``finished()`` whether the rank's programs are done; ``failure()`` the run's first
    failure line; ``corrupt`` lets a test fault tamper with an outgoing link frame
    after its pre-send validation (a malformed message on the wire); ``state`` the
    rank's state, which received frames update."""

    fail: Callable[[str], None] = lambda line: None
    remote_fail: Callable[[str], None] = lambda line: None
    finished: Callable[[], bool] = lambda: False
    failure: Callable[[], str | None] = lambda: None
    corrupt: Callable[[Frame], Frame] = lambda f: f
    state: DistState | FollowerState | None = None


class Channel:
    """One comms thread: its loop, and the one error line a failure of it gives.

    ``channel`` names the other end for error lines; ``last_out``/``last_in`` are the
    last queue messages sent and received (what the error line names)."""

    def __init__(self, hooks: Hooks, rec: DrainRecorder, handoff: DeviceHandoff,
                 aborted: threading.Event, name: str, channel: str) -> None:
        self.hooks, self.rec, self.handoff, self.aborted = hooks, rec, handoff, aborted
        self.channel = channel
        self.stop = False
        self.last_out: Header | None = None
        self.last_in: Header | None = None
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True, name=name)

    def _loop(self) -> None:
        raise NotImplementedError

    def _main(self) -> None:
        # one intra-op thread: an OpenMP pool spinning here would starve gloo's own threads
        torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with self.handoff.context():
                self._loop()
        except WireError as exc:
            where = exc.header.where() if exc.header else where_of(self.last_in)
            self.hooks.fail(f"comms: malformed frame from {self.channel} ({where}): {exc}")
        except Exception as exc:
            self.hooks.fail(f"comms: lost {self.channel} ({error_line(exc)}); last message "
                            f"sent: {where_of(self.last_out)}; last received: "
                            f"{where_of(self.last_in)}")
        finally:
            self.closed.set()

    def _fail_frame(self) -> Frame:
        return Frame(Header("fail", -1), {"error": self.hooks.failure() or ""})

    def _on_fail(self, frame: Frame, ready: Any) -> None:
        self.hooks.remote_fail(str(frame.body.get("error") or f"{self.channel} failed"))
        self.stop = True

    def _on_noop(self, frame: Frame, ready: Any) -> None:
        return None


def where_of(h: Header | None) -> str:
    return "none" if h is None else f"{h.action} ({h.where()})"


@dataclass(frozen=True)
class LinkConfig:
    """One link seen from this rank: ``peer`` is the rank at its other end;
    ``sends``/``receives``: queues this rank sends/receives on it; ``offset_ms``: rank0's
    clock minus this rank's (at the start handshake); ``ship_rows``: send this rank's
    trace rows on link frames (the peer is rank0), in this rank's own clock."""

    rank: int
    peer: int
    sends: frozenset[str]
    receives: frozenset[str]
    poll_s: float
    offset_ms: float = 0.0
    ship_rows: bool = False


class LinkChannel(Channel):
    """The lockstep exchange with one peer over ``link``; ``link`` None: frames are
    pumped by hand (tests). ``received`` holds the peer's shipped trace rows, in its
    own clock (rank0 merges them at the end)."""

    def __init__(self, cfg: LinkConfig, hooks: Hooks, rec: DrainRecorder,
                 handoff: DeviceHandoff, link: PeerLink | None,
                 aborted: threading.Event) -> None:
        super().__init__(hooks, rec, handoff, aborted,
                         f"pipefill-link-rank{cfg.rank}-rank{cfg.peer}", f"rank{cfg.peer}")
        self.cfg, self.link = cfg, link
        self.device = link.device if link is not None else torch.device("cpu")
        self.outbox = Outbox()
        self.send_check, self.recv_check = Checker(cfg.sends), Checker(cfg.receives)
        self.seq = 0
        self.sent_bye = self.peer_bye = False
        self.fillers: dict[int, torch.Tensor] = {}
        self.received: list[Row] = []

    def filler(self, nbytes: int) -> torch.Tensor:
        """Stand-in bytes for a payload without tensors (cached per size)."""
        if nbytes not in self.fillers:
            self.fillers[nbytes] = torch.zeros(nbytes, dtype=torch.uint8, device=self.device)
        return self.fillers[nbytes]

    def _loop(self) -> None:
        assert self.link is not None
        while not self.stop:
            frame = self._next_out()
            self.last_out = frame.header if frame.action in MESSAGES else self.last_out
            self._receive(self.link.exchange(frame))
            if frame.action == "fail" or (self.sent_bye and self.peer_bye):
                self.stop = True

    # -- outgoing -----------------------------------------------------------------------
    def _next_out(self) -> Frame:
        if self.aborted.is_set():
            return self._stamp(self._fail_frame(), None)
        done = self.hooks.finished()  # before take: nothing is submitted once programs end
        item = self.outbox.take(0.0 if done and not self.sent_bye else self.cfg.poll_s)
        if item is None and done and not self.sent_bye:
            self.sent_bye = True
            item = (Frame(Header("bye", -1)), None)
        frame, ready = item or (noop(-1), None)
        credits = self.outbox.take_credits()
        if credits:
            mine = frame.body.get("credits", [])
            frame = Frame(frame.header, {**frame.body, "credits": mine + credits}, frame.tensors)
        return self._stamp(frame, ready)

    def _stamp(self, frame: Frame, ready: Any) -> Frame:
        """Number the frame, attach trace rows, validate it, then let a fault tamper.

        Its tensors are read from here on: the comms stream first waits until they are
        ready (CUDA)."""
        self.handoff.before_send(ready)
        body = frame.body
        if self.cfg.ship_rows:
            rows = self.rec.drain()
            body = {**body, "rows": rows} if rows else body
        frame = Frame(replace(frame.header, seq=self.seq), body, frame.tensors)
        self.send_check.check(frame)
        self.seq += 1
        return self.hooks.corrupt(frame)

    # -- incoming -----------------------------------------------------------------------
    def _receive(self, frame: Frame) -> None:
        self.recv_check.check(frame)
        self.last_in = frame.header if frame.action in MESSAGES else self.last_in
        frame, ready = self.handoff.after_receive(frame)
        state = self.hooks.state
        assert isinstance(state, DistState)
        try:
            rows = frame.body.get("rows")
            if rows:
                self.received.extend(rows_from_json(rows))
            for name, call_ids in frame.body.get("credits", []):
                state.credit(queue_named(name, self.cfg.sends, frame), ints(call_ids))
            LINK_HANDLERS[frame.action](self, frame, ready)
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"bad {frame.action} body ({type(exc).__name__}: {exc})",
                            frame.header) from None

    def _state(self) -> DistState:
        assert isinstance(self.hooks.state, DistState)
        return self.hooks.state

    def _on_message(self, frame: Frame, ready: Any) -> None:
        queue, msg, sent_at = frame_message(frame)
        self._state().arrive_remote(queue, QueuedMessage(msg, ready),
                                    sent_at - self.cfg.offset_ms, frame.nbytes)

    def _on_flush(self, frame: Frame, ready: Any) -> None:
        queue = queue_named(frame.body["queue"], self.cfg.receives, frame)
        self.outbox.put(self._state().serve_flush(queue, int(frame.body["req"])), None)

    def _on_flushed(self, frame: Frame, ready: Any) -> None:
        self._state().flush_answered(int(frame.body["req"]), ints(frame.body["call_ids"]))

    def _on_bye(self, frame: Frame, ready: Any) -> None:
        self.peer_bye = True


def queue_named(name: Any, allowed: frozenset[str], frame: Frame) -> str:
    if name not in allowed:
        raise WireError(f"{frame.action} names queue {name!r}, not one of this link",
                        frame.header)
    return str(name)


def ints(raw: Any) -> list[int]:
    if not isinstance(raw, list) or not all(isinstance(v, int) for v in raw):
        raise ValueError("call_ids must be a list of integers")
    return list(raw)


Handler = Callable[[Any, Frame, Any], None]
#: frame action -> handler of a link frame
LINK_HANDLERS: dict[str, Handler] = {
    "infer": LinkChannel._on_message, "shutdown": LinkChannel._on_message,
    "credit": Channel._on_noop, "flush": LinkChannel._on_flush,
    "flushed": LinkChannel._on_flushed, "fail": Channel._on_fail,
    "bye": LinkChannel._on_bye, "noop": Channel._on_noop,
}
