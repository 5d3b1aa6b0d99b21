"""The dist wire format: frames round-trip, and every malformed frame is refused with the
message's call_id, chunk and epoch (no processes: frames are built and parsed here)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pipefill.exec.dist.faults import DistFault, wire_corruptor
from pipefill.exec.dist.trace import DrainRecorder, rows_from_json
from pipefill.exec.dist.wire import (
    MAGIC,
    WIRE_VERSION,
    Checker,
    Frame,
    Header,
    WireError,
    flatten,
    frame_message,
    message_frame,
    parse_body,
    parse_prefix,
    seal,
)
from pipefill.exec.errors import ExecConfigError
from pipefill.exec.kernels.model import Envelope
from pipefill.sim.program.actions import INFER, SHUTDOWN, Message
from pipefill.traces.recorder import Tag


def _envelope(nan: bool = False) -> Envelope:
    gen = torch.Generator().manual_seed(0)
    lat = torch.randn(1, 4, 3, 8, 8, generator=gen)
    if nan:
        lat[0, 0, 0, 0, 0] = float("nan")
    return Envelope(lat, torch.randn(1, 16, generator=gen), None)


def _wire(frame: Frame) -> Frame:
    """What a receiver rebuilds from the bytes a sender puts on the wire."""
    sealed, raw = seal(frame)
    header = parse_prefix(sealed.header.ints())
    body, specs = parse_body(header, raw)
    assert [s.shape for s in specs] == [tuple(t.shape) for t in frame.tensors]
    return Frame(header, body, tuple(t.clone() for t in frame.tensors))


def test_an_envelope_round_trips_with_its_tensors_and_fields():
    env = _envelope()
    msg = Message(INFER, Tag(0, 5, 9, 1, -1), 1234, init_cache=True, recompute=True,
                  payload=env)
    got = _wire(message_frame("q_in", msg, 0, 12.5, None))
    Checker(frozenset({"q_in"})).check(got)
    queue, back, sent_at = frame_message(got)
    assert (queue, sent_at, back.tag, back.nbytes) == ("q_in", 12.5, msg.tag, 1234)
    assert back.init_cache and back.recompute and back.kind == INFER
    assert isinstance(back.payload, Envelope) and back.payload.context is None
    assert torch.equal(back.payload.latents, env.latents)
    assert torch.equal(back.payload.cond, env.cond)


def test_a_payload_without_tensors_travels_as_filler_bytes_and_comes_back_none():
    msg = Message(SHUTDOWN, Tag(0, 4, 7, 0), 64)
    frame = message_frame("q_in", msg, 0, 0.0, torch.zeros(64, dtype=torch.uint8))
    assert frame.action == "shutdown" and frame.nbytes == 64
    _, back, _ = frame_message(_wire(frame))
    assert back.payload is None and back.is_shutdown


@pytest.mark.parametrize("mutate,error", [
    (lambda h: [0, *h[1:]], "bad magic"),
    (lambda h: [h[0], WIRE_VERSION + 98, *h[2:]], "bad version 99"),
    (lambda h: [*h[:2], 77, *h[3:]], "unknown action code 77"),
    (lambda h: [*h[:7], -5], "body length -5 out of range"),
])
def test_a_bad_prefix_is_refused(mutate, error):
    header = Header("infer", 0, 3, 2, 1, 10).ints()
    with pytest.raises(WireError, match=error) as info:
        parse_prefix(mutate(header))
    if info.value.header is not None:  # readable enough to name the work
        assert info.value.header.where() == "call_id 3, chunk 2, epoch 1"


@pytest.mark.parametrize("raw,error", [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"tensors": [{"dtype": "complex64", "shape": [2]}]}).encode(), "bad tensor"),
    (json.dumps({"tensors": [{"dtype": "uint8", "shape": [-1]}]}).encode(), "bad tensor"),
    (json.dumps({"tensors": [{"dtype": "float32", "shape": [1 << 20, 1 << 20]}]}).encode(),
     "exceeds the limit"),
])
def test_a_bad_body_is_refused_before_anything_is_allocated(raw, error):
    with pytest.raises(WireError, match=error):
        parse_body(Header("infer", 0), raw)


def test_the_checker_enforces_sequence_ids_epochs_and_finite_values():
    chk = Checker(frozenset({"q_in"}))

    def frame(seq: int, call: int, epoch: int, nan: bool = False) -> Frame:
        msg = Message(INFER, Tag(0, call, call, epoch), 8, payload=_envelope(nan))
        return message_frame("q_in", msg, seq, 0.0, None)

    chk.check(frame(0, 3, 1))
    with pytest.raises(WireError, match="sequence number 5, expected 1"):
        chk.check(frame(5, 4, 1))
    with pytest.raises(WireError, match="call_id 3 step -1 on q_in was sent before"):
        chk.check(frame(1, 3, 1))
    with pytest.raises(WireError, match="epoch 0 on q_in is older than the previous 1"):
        chk.check(frame(2, 4, 0))
    with pytest.raises(WireError, match="NaN or infinite"):
        chk.check(frame(3, 5, 1, nan=True))
    other = message_frame("q_out", Message(INFER, Tag(0, 9, 9, 1), 0), 4, 0.0, None)
    with pytest.raises(WireError, match="queue 'q_out' does not run on this link"):
        chk.check(other)


def test_a_missing_tensor_is_named_and_never_guessed():
    msg = Message(INFER, Tag(0, 2, 2, 0), 8, payload=_envelope())
    frame = message_frame("q_in", msg, 0, 0.0, None)
    corrupt = wire_corruptor(DistFault("missing_tensor", "q_in", 2), frozenset({"q_in"}))
    with pytest.raises(WireError, match=r"missing tensor: payload\.cond refers to tensor #1 "
                                        r"but the frame carries 1") as info:
        frame_message(_wire(corrupt(frame)))
    assert info.value.header is not None and info.value.header.chunk == 2


def test_the_version_fault_only_hits_its_queue_and_chunk():
    corrupt = wire_corruptor(DistFault("bad_version", "q_in", 2), frozenset({"q_in"}))
    hit = message_frame("q_in", Message(INFER, Tag(0, 2, 2, 0), 0), 0, 0.0, None)
    miss = message_frame("q_in", Message(INFER, Tag(0, 3, 3, 0), 0), 0, 0.0, None)
    assert corrupt(hit).header.version == WIRE_VERSION + 98
    assert corrupt(miss) is miss
    with pytest.raises(WireError, match="bad version 99"):
        parse_prefix(seal(corrupt(hit))[0].header.ints())


def test_only_registered_payload_types_cross_ranks():
    with pytest.raises(WireError, match="a payload of type dict cannot cross ranks"):
        flatten({"x": torch.zeros(1)}, [])
    body = {"queue": "q_in", "session": 0, "step": -1, "nbytes": 0, "init_cache": False,
            "recompute": False, "sent_at": 0.0, "filler": None,
            "payload": {"t": "Popen", "f": {"args": {"t": "none"}}}}
    with pytest.raises(WireError, match="bad payload layout"):
        frame_message(Frame(Header("infer", 0, 1, 1, 0), body))


def test_rows_ship_in_the_senders_clock_once_and_bad_rows_are_refused():
    rec = DrainRecorder()
    rec.span("denoise", "stage1", "compute", Tag(0, 1, 1, 0, 0), 10.0, 12.0)
    rec.counter("q_out", "stage0", 11.0, 1)
    rows = rows_from_json(json.loads(json.dumps(rec.drain())))
    assert [(r[1], r[9], r[10]) for r in rows] == [("denoise", 10.0, 12.0), ("q_out", 11.0, 11.0)]
    assert math.isnan(rows[0][11]) and rows[1][11] == 1.0
    assert rec.drain() == [] and rec.take() == []  # each row ships once
    rec.mark("emit", "stage1", Tag(0, 1), 13.0)
    assert [r[1] for r in rec.take()] == ["emit"] and rec.drain() == []
    bad = [["span", "x", "stage1", "compute", 0, 1, 1, 0, 0, 5.0, 4.0, None]]
    with pytest.raises(WireError, match="bad times"):
        rows_from_json(bad)
    with pytest.raises(WireError, match="needs 12 fields"):
        rows_from_json([["span"]])


@pytest.mark.parametrize("text,fault", [
    ("denoise:3", DistFault("raise", "denoise", 3, None)),
    ("stage0:decode:2", DistFault("raise", "decode", 2, "stage0")),
    ("hang:denoise:2", DistFault("hang", "denoise", 2, None)),
    ("kill:rank2:denoise:1", DistFault("kill", "denoise", 1, "rank2")),
    ("missing_tensor:q_out:4", DistFault("missing_tensor", "q_out", 4, None)),
])
def test_inject_texts_parse_into_faults(text, fault):
    assert DistFault.parse(text) == fault


@pytest.mark.parametrize("text", ["hang:2", "kill:a:b:c:1", "bad_version:stage1:q_in:2",
                                  "oops"])
def test_bad_inject_texts_are_bad_input(text):
    with pytest.raises(ExecConfigError, match="--inject"):
        DistFault.parse(text)


def test_the_magic_constant_spells_the_format():
    assert MAGIC.to_bytes(4, "big") == b"PFWD"
