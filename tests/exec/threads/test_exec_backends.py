"""The crash-only contract in the library: replay_to_file writes what was measured."""

from __future__ import annotations

import pytest

from pipefill.exec.backends import (
    BAD_INPUT,
    FAILED,
    OK,
    REPLAY_BACKENDS,
    ReplayRequest,
    replay_to_file,
)
from pipefill.exec.dist.config import DistOptions
from pipefill.exec.errors import ExecConfigError
from pipefill.exec.threads.replay import ReplayOptions
from pipefill.traces.io import read_trace
from tests.helpers.scenarios import make_scenario

COSTS = {"build": 1.0, "denoise": 2.0, "decode": 1.0}


@pytest.fixture
def request_for(tmp_path):
    sc = make_scenario({"name": "phase_pp"}, COSTS, chunks=6)
    opts = ReplayOptions(calibration_path=tmp_path / "cal.json", timeout_s=20.0)

    def build(inject: str | None = None, dopts: DistOptions | None = None) -> ReplayRequest:
        return ReplayRequest(sc, opts, dopts or DistOptions(), inject, tmp_path / "m.parquet")

    return build


def test_a_run_writes_its_trace_and_returns_it(request_for):
    req = request_for()
    outcome = replay_to_file(req, "threads")
    assert (outcome.code, outcome.error, outcome.exit_now) == (OK, None, False)
    assert outcome.trace is not None and len(outcome.trace.marks("emit")) == 6
    assert read_trace(req.out).meta["status"] == "ok"


def test_a_failed_run_writes_the_partial_trace_and_says_so(request_for):
    req = request_for(inject="denoise:3")
    outcome = replay_to_file(req, "threads")
    assert outcome.code == FAILED and outcome.trace is None and not outcome.exit_now
    assert outcome.error is not None
    assert outcome.error.startswith("stage1 failed at 'compute denoise chunk=3 step=0'")
    assert outcome.error.endswith(f"(partial trace written to {req.out})")
    trace = read_trace(req.out)
    assert trace.meta["status"] == "failed" and 3 not in set(trace.marks("emit")["chunk"])


@pytest.mark.parametrize(("backend", "dopts", "field"), [
    ("nope", None, "--backend"),
    ("threads", DistOptions(mesh_size=2), "--mesh-size"),
])
def test_bad_input_raises_before_anything_is_written(request_for, backend, dopts, field):
    req = request_for(dopts=dopts)
    with pytest.raises(ExecConfigError) as err:
        replay_to_file(req, backend)
    assert str(err.value).startswith(field) and not req.out.exists()


def test_the_registry_names_the_backends():
    assert list(REPLAY_BACKENDS) == ["threads", "dist"]
    assert BAD_INPUT == 2  # what a launched rank reports for bad input
