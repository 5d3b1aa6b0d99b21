"""Crash-only failures: a raising kernel, a stall, a hung kernel and a livelock end the run
quickly with an error naming stage, action, chunk and epoch, and a partial trace."""

from __future__ import annotations

import time

import pytest

from pipefill.exec.errors import ExecError
from pipefill.exec.kernels.registry import Fault
from pipefill.exec.threads.replay import ReplayOptions, replay
from tests.helpers.broken_policies import Deadlock, Spin, scenario_with
from tests.helpers.scenarios import make_scenario

COSTS = {"build": 1.0, "denoise": {"mean": 2.0, "steps": 2}, "decode": 1.5}


@pytest.fixture(scope="module")
def cal_path(tmp_path_factory):
    return tmp_path_factory.mktemp("cal") / "calibration.json"


def test_a_raising_kernel_stops_the_run_and_keeps_what_was_measured(cal_path):
    sc = make_scenario({"name": "phase_pp"}, COSTS, chunks=10)
    opts = ReplayOptions(calibration_path=cal_path, timeout_s=10.0, fault=Fault("denoise", 4))
    t = time.monotonic()
    with pytest.raises(ExecError) as info:
        replay(sc, opts)
    assert time.monotonic() - t < 8.0
    msg = str(info.value)
    assert msg.startswith("stage1 failed at 'compute denoise chunk=4 step=0' (chunk 4, epoch 0,")
    assert "InjectedFault: injected fault in denoise of chunk 4" in msg and "q_in:" in msg
    trace = info.value.trace
    assert trace.meta["status"] == "failed" and trace.meta["error"] == msg
    den = trace.spans[trace.spans["name"] == "denoise"]
    assert set(den["chunk"]) == {0, 1, 2, 3}  # everything before the fault, nothing after
    assert set(trace.marks("emit")["chunk"]) <= {0, 1, 2, 3}
    assert len(trace.marks("emit")) >= 1


def test_a_fault_after_a_hard_cut_names_the_new_epoch(cal_path):
    sc = make_scenario({"name": "serial", "hard_cuts": [2]}, COSTS, chunks=6)
    opts = ReplayOptions(calibration_path=cal_path, timeout_s=10.0,
                         fault=Fault("decode", 3, "stage0"))
    with pytest.raises(ExecError, match=r"^stage0 failed at 'compute decode chunk=3 step=-1' "
                                        r"\(chunk 3, epoch 1, call_id \d+\)"):
        replay(sc, opts)


def _with(policy):
    return scenario_with(policy, COSTS)


def test_a_deadlock_is_reported_at_once_not_after_the_timeout(cal_path):
    t = time.monotonic()
    with pytest.raises(ExecError) as info:
        replay(_with(Deadlock()), ReplayOptions(calibration_path=cal_path, timeout_s=30.0))
    assert time.monotonic() - t < 10.0
    msg = str(info.value)
    assert "stall at t=" in msg and "stage0 blocked at 'reserve q_in'" in msg
    assert "stage1 blocked at 'get q_out'" in msg and "q_in: 1/1 slots held" in msg


def test_a_livelock_is_caught(cal_path):
    with pytest.raises(ExecError, match=r"stage0 failed at 'poll'.*livelock"):
        replay(_with(Spin()), ReplayOptions(calibration_path=cal_path, timeout_s=30.0))


def test_a_hung_kernel_ends_the_run_naming_it(cal_path):
    """Whichever fires first, the watchdog or the other stage's wait, names the kernel."""
    sc = make_scenario({"name": "serial"}, {"build": 1.0, "denoise": 1.0, "decode": 900.0},
                       chunks=2)
    t = time.monotonic()
    with pytest.raises(ExecError) as info:
        replay(sc, ReplayOptions(calibration_path=cal_path, timeout_s=0.3))
    assert time.monotonic() - t < 5.0
    msg = str(info.value)
    assert "stage0 at 'compute decode chunk=0 step=-1'" in msg
    assert info.value.trace.meta["status"] == "failed"
    assert info.value.abandoned == ()  # the calibrated loop saw the abort and stopped
