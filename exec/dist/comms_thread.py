"""The comms thread: on each rank, the one thread that owns all transport of a run.

Programs never touch torch.distributed: their Put/Release/Flush hand frames to an
:class:`Outbox`, and the comms thread moves them. Rank0 and the mesh leader run a
lockstep link (one frame each way per round, a ``noop`` when idle, see
:mod:`pipefill.exec.dist.link`); the leader also broadcasts its program's results to the mesh
followers, whose comms thread only receives. Every frame is validated before it is
sent and after it is received (:class:`pipefill.exec.dist.wire.Checker`). A link ends when both
ends said ``bye`` (their programs finished), or at once after a ``fail`` either way.

The tensor-parallel collectives inside the model kernels are not transport: they run on
the compute thread, on their own process group (:mod:`pipefill.exec.dist.tp`). The clock
handshakes run before this thread starts and after it ended, so they never share the link.
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
from pipefill.exec.dist.link import MeshCast, PeerLink, noop
from pipefill.exec.dist.state import DistState, FollowerState, dropped_from_body, view_from_body
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


@dataclass(frozen=True)
class CommsConfig:
    """``peer``: the rank at the other end of the link (None on followers);
    ``sends``/``receives``: queues this rank sends/receives on the link;
    ``cast_queues``: queues whose Get results the leader broadcasts; ``offset_ms``:
    rank0's clock minus this rank's (at the start handshake); ``ship_rows``: send this
    rank's trace rows to rank0 on link frames, in this rank's own clock."""

    rank: int
    peer: int | None
    sends: frozenset[str]
    receives: frozenset[str]
    cast_queues: frozenset[str]
    poll_s: float
    keepalive_s: float
    offset_ms: float = 0.0
    ship_rows: bool = False


class Comms:
    """The comms thread of one rank. ``fail(line)`` reports a local failure;
    ``remote_fail(line)`` one reported by another rank; ``finished()`` says the rank's
    programs are done. ``corrupt`` lets a test fault tamper with a frame after its
    pre-send validation (a malformed message on the wire)."""

    def __init__(self, cfg: CommsConfig, rec: DrainRecorder, handoff: DeviceHandoff,
                 link: PeerLink | None, cast: MeshCast | None, aborted: threading.Event) -> None:
        self.cfg, self.rec, self.handoff = cfg, rec, handoff
        self.link, self.cast, self.aborted = link, cast, aborted
        carrier = link or cast
        self.device = carrier.device if carrier is not None else torch.device("cpu")
        self.state: DistState | FollowerState | None = None  # attached before start
        self.outbox, self.mesh_box = Outbox(), Outbox()
        self.fail: Callable[[str], None] = lambda line: None
        self.remote_fail: Callable[[str], None] = lambda line: None
        self.finished: Callable[[], bool] = lambda: False
        self.failure: Callable[[], str | None] = lambda: None
        self.corrupt: Callable[[Frame], Frame] = lambda f: f
        self.send_check, self.recv_check = Checker(cfg.sends), Checker(cfg.receives)
        self.cast_check = Checker(cfg.cast_queues)
        self.seq, self.cast_seq = 0, 0
        self.sent_bye = self.peer_bye = self.stop = False
        self.last_cast = time.monotonic()
        self.last_out: Header | None = None  # the last queue messages, for error lines
        self.last_in: Header | None = None
        self.fillers: dict[int, torch.Tensor] = {}
        #: the peer's shipped trace rows, in its own clock (rank0 merges them at the end)
        self.received: list[Row] = []
        self.closed = threading.Event()
        self.channel = f"rank{cfg.peer}" if cfg.peer is not None else "rank1 (mesh leader)"
        self.thread = threading.Thread(target=self._main, daemon=True,
                                       name=f"pipefill-comms-rank{cfg.rank}")

    def filler(self, nbytes: int) -> torch.Tensor:
        """Stand-in bytes for a payload without tensors (cached per size)."""
        if nbytes not in self.fillers:
            self.fillers[nbytes] = torch.zeros(nbytes, dtype=torch.uint8, device=self.device)
        return self.fillers[nbytes]

    # -- thread body ---------------------------------------------------------------------
    def _main(self) -> None:
        # one intra-op thread: an OpenMP pool spinning here would starve gloo's own threads
        torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with self.handoff.context():
                if self.link is not None:
                    self._link_loop()
                elif self.cast is not None:
                    self._follow_loop()
        except WireError as exc:
            where = exc.header.where() if exc.header else self._where(self.last_in)
            self.fail(f"comms: malformed frame from {self.channel} ({where}): {exc}")
        except Exception as exc:
            self.fail(f"comms: lost {self.channel} ({error_line(exc)}); last message "
                      f"sent: {self._where(self.last_out)}; last received: "
                      f"{self._where(self.last_in)}")
        finally:
            self.closed.set()

    @staticmethod
    def _where(h: Header | None) -> str:
        return "none" if h is None else f"{h.action} ({h.where()})"

    def _link_loop(self) -> None:
        assert self.link is not None
        while not self.stop:
            frame = self._next_out()
            self.last_out = frame.header if frame.action in MESSAGES else self.last_out
            self.channel = f"rank{self.cfg.peer}"
            incoming = self.link.exchange(frame)
            self._receive(incoming)
            if self.cast is not None:
                self.channel = "a mesh follower (mesh broadcast)"
                self._cast_round(final=False)
            if frame.action == "fail" or (self.sent_bye and self.peer_bye):
                self.stop = True
        if self.cast is not None:
            self.channel = "a mesh follower (mesh broadcast)"
            self._cast_round(final=True)

    def _follow_loop(self) -> None:
        assert self.cast is not None
        while not self.stop:
            self._receive(self.cast.recv())

    # -- outgoing -----------------------------------------------------------------------
    def _next_out(self) -> Frame:
        if self.aborted.is_set():
            return self._stamp(Frame(Header("fail", -1), {"error": self.failure() or ""}),
                               None, link=True)
        done = self.finished()  # before take: nothing is submitted once programs are done
        item = self.outbox.take(0.0 if done and not self.sent_bye else self.cfg.poll_s)
        if item is None and done and not self.sent_bye:
            self.sent_bye = True
            item = (Frame(Header("bye", -1)), None)
        frame, ready = item or (noop(-1), None)
        credits = self.outbox.take_credits()
        if credits:
            mine = frame.body.get("credits", [])
            frame = Frame(frame.header, {**frame.body, "credits": mine + credits}, frame.tensors)
        return self._stamp(frame, ready, link=True)

    def _stamp(self, frame: Frame, ready: Any, link: bool) -> Frame:
        """Number the frame, attach trace rows, validate it, then let a fault tamper.

        Its tensors are read from here on: the comms stream first waits until they are
        ready (CUDA)."""
        self.handoff.before_send(ready)
        body = frame.body
        if link and self.cfg.ship_rows:
            rows = self.rec.drain()
            body = {**body, "rows": rows} if rows else body
        seq = self.seq if link else self.cast_seq
        frame = Frame(replace(frame.header, seq=seq), body, frame.tensors)
        (self.send_check if link else self.cast_check).check(frame)
        if link:
            self.seq += 1
            return self.corrupt(frame)
        self.cast_seq += 1
        return frame

    def _cast_round(self, final: bool) -> None:
        assert self.cast is not None
        items = self.mesh_box.take_all()
        if self.aborted.is_set():
            items.append((Frame(Header("fail", -1), {"error": self.failure() or ""}), None))
        elif final:
            items.append((Frame(Header("bye", -1)), None))
        elif not items and time.monotonic() - self.last_cast > self.cfg.keepalive_s:
            items.append((noop(-1), None))
        for frame, ready in items:
            self.cast.send(self._stamp(frame, ready, link=False))
            self.last_cast = time.monotonic()

    # -- incoming -----------------------------------------------------------------------
    def _receive(self, frame: Frame) -> None:
        self.recv_check.check(frame)
        self.last_in = frame.header if frame.action in MESSAGES else self.last_in
        frame, ready = self.handoff.after_receive(frame)
        try:
            rows = frame.body.get("rows")
            if rows:
                self.received.extend(rows_from_json(rows))
            for name, call_ids in frame.body.get("credits", []):
                assert isinstance(self.state, DistState)
                self.state.credit(_queue_named(name, self.cfg.sends, frame), _ints(call_ids))
            handler = (FOLLOWER_HANDLERS if isinstance(self.state, FollowerState)
                       else LINK_HANDLERS)[frame.action]
            handler(self, frame, ready)
        except (KeyError, TypeError, ValueError) as exc:
            raise WireError(f"bad {frame.action} body ({type(exc).__name__}: {exc})",
                            frame.header) from None

    def _on_message(self, frame: Frame, ready: Any) -> None:
        assert isinstance(self.state, DistState)
        queue, msg, sent_at = frame_message(frame)
        self.state.arrive_remote(queue, QueuedMessage(msg, ready), sent_at - self.cfg.offset_ms)

    def _on_flush(self, frame: Frame, ready: Any) -> None:
        assert isinstance(self.state, DistState)
        reply = self.state.serve_flush(_queue(frame, self.cfg.receives), int(frame.body["req"]))
        self.outbox.put(reply, None)

    def _on_flushed(self, frame: Frame, ready: Any) -> None:
        assert isinstance(self.state, DistState)
        self.state.flush_answered(int(frame.body["req"]), _ints(frame.body["call_ids"]))

    def _on_fail(self, frame: Frame, ready: Any) -> None:
        self.remote_fail(str(frame.body.get("error") or f"{self.channel} failed"))
        self.stop = True

    def _on_bye(self, frame: Frame, ready: Any) -> None:
        if isinstance(self.state, FollowerState):
            self.stop = True
        self.peer_bye = True

    def _on_noop(self, frame: Frame, ready: Any) -> None:
        return None

    def _on_got(self, frame: Frame, ready: Any) -> None:
        assert isinstance(self.state, FollowerState)
        queue, msg, _ = frame_message(frame)
        self.state.push("get", queue, QueuedMessage(msg, ready))

    def _on_view(self, frame: Frame, ready: Any) -> None:
        assert isinstance(self.state, FollowerState)
        self.state.push("view", "", view_from_body(frame.body))

    def _on_dropped(self, frame: Frame, ready: Any) -> None:
        assert isinstance(self.state, FollowerState)
        self.state.push("flush", str(frame.body["queue"]), dropped_from_body(frame.body))


def _queue(frame: Frame, allowed: frozenset[str]) -> str:
    return _queue_named(frame.body["queue"], allowed, frame)


def _queue_named(name: Any, allowed: frozenset[str], frame: Frame) -> str:
    if name not in allowed:
        raise WireError(f"{frame.action} names queue {name!r}, not one of this link",
                        frame.header)
    return str(name)


def _ints(raw: Any) -> list[int]:
    if not isinstance(raw, list) or not all(isinstance(v, int) for v in raw):
        raise ValueError("call_ids must be a list of integers")
    return list(raw)


Handler = Callable[[Comms, Frame, Any], None]
#: frame action -> handler, on rank0 and the mesh leader (link frames)
LINK_HANDLERS: dict[str, Handler] = {
    "infer": Comms._on_message, "shutdown": Comms._on_message, "credit": Comms._on_noop,
    "flush": Comms._on_flush, "flushed": Comms._on_flushed, "fail": Comms._on_fail,
    "bye": Comms._on_bye, "noop": Comms._on_noop,
}
#: frame action -> handler, on mesh followers (the leader's broadcasts)
FOLLOWER_HANDLERS: dict[str, Handler] = {
    "infer": Comms._on_got, "shutdown": Comms._on_got, "view": Comms._on_view,
    "dropped": Comms._on_dropped, "fail": Comms._on_fail, "bye": Comms._on_bye,
    "noop": Comms._on_noop,
}
