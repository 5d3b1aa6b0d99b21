"""Crash-only faults under dist: each injected fault ends the whole run within the timeout,
every rank exits, the exit code is 3, one error line names the rank, call_id, chunk and
epoch, and the trace of what completed before the fault is written."""

from __future__ import annotations

import re
import time

import pytest
from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.traces.io import read_trace
from tests.helpers.dist import FAST, dist_cal, run_token

__all__ = ["dist_cal", "run_token"]  # fixtures shared from tests.helpers.dist

runner = CliRunner()
TIMEOUT_S = 2.0
#: setup (imports, rendezvous, calibration) + the timeout + the grace of waiting ranks
BOUND_S = 25.0

FAULTS = [
    pytest.param(["--inject", "denoise:3"],
                 r"rank1 stage1 failed at 'compute denoise chunk=3 step=0' \(chunk 3, epoch 0, "
                 r"call_id 3\): InjectedFault: injected fault in denoise of chunk 3", 3,
                 id="mesh-stage-raises"),
    pytest.param(["--inject", "stage0:decode:2"],
                 r"rank0 stage0 failed at 'compute decode chunk=2 step=-1' \(chunk 2, epoch 0, "
                 r"call_id 2\): InjectedFault", 2, id="rank0-stage-raises"),
    pytest.param(["--inject", "hang:denoise:2"],
                 r"rank1 stage1: no progress for [\d.]+ s \(timeout 2 s\) in 'compute denoise "
                 r"chunk=2 step=0' \(chunk 2, epoch 0, call_id 2\)", 2, id="stage-hangs"),
    pytest.param(["--inject", "kill:denoise:2"],
                 r"rank0 comms: lost rank1 \(RuntimeError: .*\); last message sent: infer "
                 # result 1 may still be on the wire when the connection drops
                 r"\(call_id \d+, chunk \d+, epoch 0\); last received: infer \(call_id [01], "
                 r"chunk [01], epoch 0\)", 2, id="rank-killed"),
    pytest.param(["--inject", "bad_version:q_in:2"],
                 r"rank1 comms: malformed frame from rank0 \(call_id 2, chunk 2, epoch 0\): "
                 r"bad version 99 \(expected 1\)", 2, id="bad-version"),
    pytest.param(["--inject", "missing_tensor:q_out:2"],
                 r"rank0 comms: malformed frame from rank1 \(call_id 2, chunk 2, epoch 0\): "
                 r"missing tensor", 2, id="missing-tensor"),
    pytest.param(["--mesh-size", "2", "--inject", "wrong_group:denoise:2"],
                 r"rank1 stage1 failed at 'compute denoise chunk=2 step=0' \(chunk 2, epoch 0, "
                 r"call_id 2\): WrongGroupError: all_reduce aimed at the world group", 2,
                 id="wrong-group-collective"),
]


@pytest.mark.parametrize("args,line,first_bad", FAULTS)
def test_a_fault_ends_every_rank_with_one_line_and_the_partial_trace(tmp_path, run_token,
                                                                      dist_cal, args, line,
                                                                      first_bad):
    out = tmp_path / "m.parquet"
    start = time.monotonic()
    res = runner.invoke(app, ["replay", *FAST, *dist_cal, "--backend", "dist", "--timeout",
                              str(TIMEOUT_S), *args, "--out", str(out)])
    elapsed = time.monotonic() - start
    assert res.exit_code == 3, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].endswith(f" (partial trace written to {out})")
    assert re.match(f"error: {line}", lines[0]), lines[0]
    assert elapsed < BOUND_S
    trace = read_trace(out)
    assert trace.meta["status"] == "failed" and trace.meta["error"] in lines[0]
    emitted = set(trace.marks("emit")["chunk"])
    # what completed is there, nothing after (a killed peer may cut off even chunk 0)
    assert emitted or "lost rank" in lines[0]
    assert max(emitted, default=-1) < first_bad
