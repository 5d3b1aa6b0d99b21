"""The wire format of the dist backend: versioned frames of integers, JSON bytes and tensors.

A frame is what one rank sends another in one step: an int64 *prefix* of
:data:`PREFIX_LEN` integers (magic, version, action, seq, call_id, chunk, epoch, body
length), a UTF-8 JSON *body* carried as a uint8 tensor (queue, message fields, tensor
specs, payload layout, trace rows, control fields) and then the tensors the body
declares, in order. Nothing received is ever unpickled: a payload is rebuilt only from
tensors and a JSON layout naming types of :data:`PAYLOAD_TYPES`, so a stray or hostile
peer can at worst send numbers that fail validation.

:class:`Checker` validates frames on both ends of a link (before sending and after
receipt): version and action, the per-link sequence number, per-queue monotonic
call_ids and non-decreasing epochs, tensor specs against limits, finite float values
and a payload layout that uses every tensor exactly once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import torch

from pipefill.exec.kernels.model import Envelope
from pipefill.exec.kernels.sliced import Activations
from pipefill.sim.program.actions import INFER, SHUTDOWN, Message
from pipefill.traces.recorder import Tag

MAGIC = 0x50465744  # "PFWD"
WIRE_VERSION = 1
PREFIX_LEN = 8
#: the largest JSON body and tensor a receiver will allocate for (hostile headers)
MAX_BODY_BYTES = 16 << 20
MAX_TENSOR_BYTES = 8 << 30

#: frame action -> wire code. ``infer``/``shutdown`` carry queue messages; the rest are
#: control: slot credits, the two halves of a cross-rank flush, a failure report, the
#: end of a link, and the leader's replays of its program's results to mesh followers
ACTIONS: dict[str, int] = {"infer": 1, "noop": 2, "shutdown": 3, "credit": 4, "flush": 5,
                           "flushed": 6, "fail": 7, "bye": 8, "view": 9, "dropped": 10}
ACTION_NAMES: dict[int, str] = {code: name for name, code in ACTIONS.items()}
#: message kinds (sim.actions) <-> the frame action that carries them
KIND_ACTION = {INFER: "infer", SHUTDOWN: "shutdown"}

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float64": torch.float64, "int64": torch.int64, "int32": torch.int32,
    "uint8": torch.uint8, "bool": torch.bool,
}
DTYPE_NAMES: dict[torch.dtype, str] = {dt: name for name, dt in DTYPES.items()}

#: dataclass payloads that may cross ranks (tensor or None fields only)
PAYLOAD_TYPES: dict[str, type] = {"Envelope": Envelope, "Activations": Activations}


class WireError(RuntimeError):
    """A frame failed validation. ``header`` is its prefix when that much was readable,
    so the error line can name the message's call_id, chunk and epoch."""

    def __init__(self, message: str, header: Header | None = None) -> None:
        super().__init__(message)
        self.header = header


@dataclass(frozen=True)
class Header:
    """The integer prefix of a frame (``call_id``/``chunk``/``epoch`` are -1 on control
    frames that belong to no work item)."""

    action: str
    seq: int
    call_id: int = -1
    chunk: int = -1
    epoch: int = -1
    body_len: int = 0
    version: int = WIRE_VERSION

    def ints(self) -> list[int]:
        return [MAGIC, self.version, ACTIONS[self.action], self.seq, self.call_id,
                self.chunk, self.epoch, self.body_len]

    def where(self) -> str:
        return f"call_id {self.call_id}, chunk {self.chunk}, epoch {self.epoch}"


@dataclass(frozen=True)
class TensorSpec:
    """dtype name and shape of one tensor of a frame."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=DTYPES[self.dtype]).element_size()

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Frame:
    """One unit on a link: header, JSON body (without ``tensors``) and tensors.

    Invariant after :func:`seal`: ``header.body_len`` is the length of :meth:`body_bytes`
    and ``specs`` describes ``tensors`` one to one.
    """

    header: Header
    body: dict[str, Any] = field(default_factory=dict)
    tensors: tuple[torch.Tensor, ...] = ()

    @property
    def action(self) -> str:
        return self.header.action

    @property
    def specs(self) -> list[TensorSpec]:
        return [spec_of(t) for t in self.tensors]

    def body_bytes(self) -> bytes:
        if not self.body and not self.tensors:
            return b""
        full = {**self.body, "tensors": [s.to_json() for s in self.specs]}
        return json.dumps(full, separators=(",", ":"), allow_nan=False).encode()

    @property
    def nbytes(self) -> int:
        """Bytes of tensors this frame carries (a ``send`` span's value)."""
        return sum(t.numel() * t.element_size() for t in self.tensors)


def spec_of(t: torch.Tensor) -> TensorSpec:
    name = DTYPE_NAMES.get(t.dtype)
    if name is None:
        raise WireError(f"tensor dtype {t.dtype} cannot cross ranks "
                        f"(allowed: {', '.join(DTYPES)})")
    return TensorSpec(name, tuple(int(d) for d in t.shape))


def seal(frame: Frame) -> tuple[Frame, bytes]:
    """The frame with its body length filled in, and the body bytes to send."""
    raw = frame.body_bytes()
    h = frame.header
    header = Header(h.action, h.seq, h.call_id, h.chunk, h.epoch, len(raw), h.version)
    return Frame(header, frame.body, frame.tensors), raw


# -- decoding ------------------------------------------------------------------------
def parse_prefix(values: list[int]) -> Header:
    """Validate the integer prefix (magic, version, action, lengths) into a Header."""
    if len(values) != PREFIX_LEN or values[0] != MAGIC:
        raise WireError("not a pipefill frame (bad magic)")
    _, version, code, seq, call_id, chunk, epoch, body_len = values
    header = Header(ACTION_NAMES.get(code, f"#{code}"), seq, call_id, chunk, epoch,
                    body_len, version)
    if version != WIRE_VERSION:
        raise WireError(f"bad version {version} (expected {WIRE_VERSION})", header)
    if code not in ACTION_NAMES:
        raise WireError(f"unknown action code {code}", header)
    if not 0 <= body_len <= MAX_BODY_BYTES:
        raise WireError(f"body length {body_len} out of range", header)
    return header


def parse_body(header: Header, raw: bytes) -> tuple[dict[str, Any], list[TensorSpec]]:
    """The JSON body and its tensor specs, validated against the receiver's limits."""
    if not raw:
        return {}, []
    try:
        body = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"body is not JSON ({exc})", header) from None
    if not isinstance(body, dict) or not isinstance(body.get("tensors", []), list):
        raise WireError("body is not a JSON object with a tensors list", header)
    specs = [_spec(header, s) for s in body.pop("tensors", [])]
    return body, specs


def _spec(header: Header, raw: Any) -> TensorSpec:
    ok = isinstance(raw, dict) and raw.get("dtype") in DTYPES and isinstance(raw.get("shape"),
                                                                             list)
    shape = raw.get("shape", []) if ok else []
    if not ok or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise WireError(f"bad tensor spec {raw!r}", header)
    spec = TensorSpec(raw["dtype"], tuple(shape))
    if spec.nbytes > MAX_TENSOR_BYTES:
        raise WireError(f"tensor of {spec.nbytes} bytes exceeds the limit", header)
    return spec


# -- payloads ------------------------------------------------------------------------
def flatten(obj: Any, tensors: list[torch.Tensor]) -> dict[str, Any]:
    """A JSON layout of ``obj`` whose tensors are appended to ``tensors``."""
    if obj is None:
        return {"t": "none"}
    if isinstance(obj, torch.Tensor):
        tensors.append(obj)
        return {"t": "tensor", "i": len(tensors) - 1}
    name = type(obj).__name__
    if PAYLOAD_TYPES.get(name) is type(obj) and is_dataclass(obj):
        return {"t": name, "f": {f.name: flatten(getattr(obj, f.name), tensors)
                                 for f in fields(obj)}}
    raise WireError(f"a payload of type {name} cannot cross ranks "
                    f"(allowed: tensors, None, {', '.join(PAYLOAD_TYPES)})")


def unflatten(layout: Any, tensors: tuple[torch.Tensor, ...], used: set[int],
              where: str = "payload") -> Any:
    """Rebuild a payload from its layout; every tensor index may be used once."""
    kind = layout.get("t") if isinstance(layout, dict) else None
    if kind == "none":
        return None
    if kind == "tensor":
        i = layout.get("i")
        if not isinstance(i, int) or i in used or not 0 <= i < len(tensors):
            raise WireError(f"missing tensor: {where} refers to tensor #{i} but the frame "
                            f"carries {len(tensors)}")
        used.add(i)
        return tensors[i]
    cls = PAYLOAD_TYPES.get(str(kind))
    parts = layout.get("f") if isinstance(layout, dict) else None
    if cls is None or not isinstance(parts, dict) or set(parts) != {f.name for f in
                                                                    fields(cls)}:
        raise WireError(f"bad payload layout at {where}: {str(layout)[:80]}")
    return cls(**{k: unflatten(v, tensors, used, f"{where}.{k}") for k, v in parts.items()})


# -- queue messages ------------------------------------------------------------------
def message_frame(queue: str, msg: Message, seq: int, sent_at: float,
                  filler: torch.Tensor | None) -> Frame:
    """Encode a queue message. ``filler``: bytes standing in for a payload without
    tensors (calibrated kernels), so transport moves ``msg.nbytes`` real bytes."""
    tensors: list[torch.Tensor] = []
    layout = flatten(msg.payload, tensors)
    body: dict[str, Any] = {
        "queue": queue, "session": msg.tag.session, "step": msg.tag.step,
        "nbytes": msg.nbytes, "init_cache": msg.init_cache, "recompute": msg.recompute,
        "sent_at": sent_at, "payload": layout, "filler": None,
    }
    if filler is not None and not tensors:
        tensors.append(filler)
        body["filler"] = 0
    tag = msg.tag
    return Frame(Header(KIND_ACTION[msg.kind], seq, tag.call_id, tag.chunk, tag.epoch),
                 body, tuple(tensors))


def frame_message(frame: Frame) -> tuple[str, Message, float]:
    """Decode a queue message frame into (queue, message, sent_at); raises WireError."""
    h, b = frame.header, frame.body
    try:
        queue, sent_at = str(b["queue"]), float(b["sent_at"])
        tag = Tag(int(b["session"]), h.chunk, h.call_id, h.epoch, int(b["step"]))
        used: set[int] = set()
        filler = b.get("filler")
        if filler is not None:
            if not isinstance(filler, int) or not 0 <= filler < len(frame.tensors):
                raise WireError(f"missing tensor: the {b['nbytes']} payload bytes (tensor "
                                f"#{filler}) are not in the frame", h)
            used.add(filler)
        payload = unflatten(b["payload"], frame.tensors, used)
        kind = INFER if h.action == "infer" else SHUTDOWN
        msg = Message(kind, tag, int(b["nbytes"]), bool(b["init_cache"]),
                      bool(b["recompute"]), payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"bad message body ({type(exc).__name__}: {exc})", h) from None
    except WireError as exc:
        raise WireError(str(exc), h) from None
    if len(used) != len(frame.tensors):
        raise WireError(f"{len(frame.tensors) - len(used)} tensor(s) not used by the "
                        "payload", h)
    return queue, msg, sent_at


# -- validation ----------------------------------------------------------------------
@dataclass
class Checker:
    """Validates the frames of one direction of one link, in order.

    ``queues``: the queues this direction may carry. Invariants enforced: ``seq``
    increases by exactly 1 per frame; on each queue, a message (call_id, step) is never
    sent twice (a batched call's message is named by its first item, so its call_ids
    need not increase: the last ticks of a Stream Batch ring carry older chunks only)
    and epochs never decrease; float tensors are finite. The same checker type runs on
    the sender (before sending: a bug here) and the receiver (after receipt).
    """

    queues: frozenset[str]
    next_seq: int = 0
    seen: dict[str, set[tuple[int, int]]] = field(default_factory=dict)
    last_epoch: dict[str, int] = field(default_factory=dict)

    def check(self, frame: Frame) -> None:
        h = frame.header
        if h.version != WIRE_VERSION:
            raise WireError(f"bad version {h.version} (expected {WIRE_VERSION})", h)
        if h.seq != self.next_seq:
            raise WireError(f"sequence number {h.seq}, expected {self.next_seq} "
                            "(a frame was lost, repeated or reordered)", h)
        self.next_seq += 1
        for t in frame.tensors:
            if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
                raise WireError("a tensor holds NaN or infinite values", h)
        if h.action in ("infer", "shutdown"):
            self._check_message(frame)

    def _check_message(self, frame: Frame) -> None:
        h = frame.header
        queue = frame.body.get("queue")
        if queue not in self.queues:
            raise WireError(f"queue {queue!r} does not run on this link "
                            f"(allowed: {', '.join(sorted(self.queues))})", h)
        if h.call_id < 0 or h.chunk < 0 or h.epoch < 0:
            raise WireError("negative call_id, chunk or epoch", h)
        step = frame.body.get("step")
        if not isinstance(step, int):
            raise WireError(f"step {step!r} on {queue} is not an integer", h)
        key, seen = (h.call_id, step), self.seen.setdefault(queue, set())
        if key in seen:
            raise WireError(f"call_id {h.call_id} step {step} on {queue} was sent before "
                            "(a repeated message)", h)
        if h.epoch < self.last_epoch.get(queue, 0):
            raise WireError(f"epoch {h.epoch} on {queue} is older than the previous "
                            f"{self.last_epoch[queue]}", h)
        seen.add(key)
        self.last_epoch[queue] = h.epoch
