"""Crash-only on the new layouts: the middle rank of a Stream Batch ring (W = 3) or of a
layer pipeline (P = 3) killed, hung, or sending a frame with a bad header ends the
whole run within its timeout with one line naming the rank, call_id, chunk and epoch,
exit 3, the partial trace written and no rank left running."""

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
RING = ["--set", "policy.name=stream_batch", "--set", "policy.stages=3", "--set",
        "policy.blocks=6", "--set", "policy.steps=2", "--set", "costs.denoise.steps=2"]
PIPE = ["--set", "policy.name=layer_pp", "--set", "policy.stages=3", "--set",
        "policy.blocks=6", "--set", "policy.items=2"]
#: a queue message named in the line: rank, then call_id, chunk and epoch
WHERE = r"call_id \d+, chunk \d+, epoch 0"
#: a neighbour of the killed rank names the last message it sent or received on that link
LOST = (rf"rank[02] comms: lost rank1 \(.*\); last message sent: (infer \({WHERE}\)|none); "
        rf"last received: (infer \({WHERE}\)|none)")

FAULTS = [
    pytest.param(RING, "kill:stage1:denoise:2",
                 LOST, id="ring-middle-killed"),
    pytest.param(RING, "hang:stage1:denoise:2",
                 r"rank1 stage1: no progress for [\d.]+ s \(timeout 2 s\) in 'compute denoise "
                 r"chunk=2 step=0' \(chunk 2, epoch 0, call_id 2\)", id="ring-middle-hangs"),
    pytest.param(RING, "bad_version:act1:2",
                 r"rank2 comms: malformed frame from rank1 \(call_id 2, chunk 2, epoch 0\): "
                 r"bad version 99 \(expected 1\)", id="ring-middle-bad-header"),
    pytest.param(PIPE, "kill:stage1:denoise:2",
                 LOST, id="pipe-middle-killed"),
    pytest.param(PIPE, "hang:stage1:denoise:2",
                 r"rank1 stage1: no progress for [\d.]+ s \(timeout 2 s\) in 'compute denoise "
                 r"chunk=2 step=0' \(chunk 2, epoch 0, call_id 2\)", id="pipe-middle-hangs"),
    pytest.param(PIPE, "bad_version:act1:2",
                 r"rank2 comms: malformed frame from rank1 \(call_id 2, chunk 2, epoch 0\): "
                 r"bad version 99 \(expected 1\)", id="pipe-middle-bad-header"),
]


@pytest.mark.parametrize("policy,inject,line", FAULTS)
def test_a_fault_in_the_middle_rank_ends_every_rank_with_one_line(tmp_path, run_token,
                                                                   dist_cal, policy, inject,
                                                                   line):
    out = tmp_path / "m.parquet"
    start = time.monotonic()
    res = runner.invoke(app, ["replay", *FAST, *policy, *dist_cal, "--backend", "dist",
                              "--timeout", str(TIMEOUT_S), "--inject", inject, "--out",
                              str(out)])
    elapsed = time.monotonic() - start
    assert res.exit_code == 3, res.output
    # a policy switched by --set is noted first (the fields it drops), then one error line
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("note:")]
    assert len(lines) == 1, lines
    assert re.match(f"error: {line}", lines[0]), lines[0]
    assert all(re.search(rf"\b{k} \d+", lines[0]) for k in ("call_id", "chunk", "epoch"))
    assert lines[0].endswith(f" (partial trace written to {out})")
    assert elapsed < BOUND_S
    trace = read_trace(out)
    assert trace.meta["status"] == "failed" and trace.meta["error"] in lines[0]
    comp = trace.spans[trace.spans["lane"] == "compute"]
    # what ran before the fault is there (rank0's own rows at least), nothing beyond it
    assert not comp[comp["stage"] == "stage0"].empty
    assert set(trace.marks("emit")["chunk"]) <= {0, 1}
