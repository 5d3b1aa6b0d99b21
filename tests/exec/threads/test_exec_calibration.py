"""Calibrated kernels: iteration sizing, the JSON calibration cache, device options."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pipefill.exec.errors import ExecConfigError
from pipefill.exec.kernels import calibrated
from pipefill.exec.kernels.calibrated import Calibration, load_or_measure
from pipefill.exec.kernels.registry import Fault
from pipefill.exec.threads.replay import ReplayOptions, replay
from pipefill.exec.threads.runtime import CpuRuntime, open_runtime
from tests.helpers.scenarios import make_scenario

STAGES = ("stage0", "stage1")


@given(iter_ms=st.floats(0.01, 5.0), duration=st.floats(0.0, 500.0))
def test_iterations_size_a_phase_to_within_half_an_iteration(iter_ms, duration):
    cal = Calibration("k", 64, iter_ms, "float32")
    assert abs(cal.iterations(duration) * iter_ms - duration) <= iter_ms / 2 + 1e-9


def test_calibration_is_measured_once_and_cached_as_json(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "calibration.json"
    rt = CpuRuntime(STAGES, 1)
    cal, use = load_or_measure(rt, path)
    assert use.source == "measured" and cal.iter_ms > 0 and cal.n >= 32
    data = json.loads(path.read_text())
    entry = data["entries"][rt.calibration_key()]
    assert data["version"] == 1 and entry["n"] == cal.n and entry["iter_ms"] == cal.iter_ms
    assert entry["measured_at"] == use.measured_at and entry["load"]["cores"] >= 1

    def no_measuring(runtime):
        raise AssertionError("must come from the cache")

    monkeypatch.setattr(calibrated, "measure", no_measuring)
    agrees = lambda runtime, c: c.iter_ms * 1.04  # noqa: E731
    again, use = load_or_measure(rt, path, check_fn=agrees)
    assert again == cal and use.cached and use.quick_ms == pytest.approx(cal.iter_ms * 1.04)
    assert use.measured_at == entry["measured_at"] and use.load_at_measure == entry["load"]

    def no_checking(runtime, c):
        raise AssertionError("recheck=False uses the cache as is")

    assert load_or_measure(rt, path, check_fn=no_checking, recheck=False)[0] == cal


@pytest.mark.parametrize(("ratio", "recalibrate", "source"), [
    (1.06, False, "remeasured"),    # the machine got slower than the cache says
    (0.94, False, "remeasured"),    # ... or faster
    (1.0, True, "recalibrated"),    # --recalibrate: even when the check agrees
])
def test_a_cache_that_disagrees_with_a_quick_check_is_measured_again(
        tmp_path, monkeypatch, ratio, recalibrate, source):
    path = tmp_path / "calibration.json"
    rt = CpuRuntime(STAGES, 1)
    old = Calibration(rt.calibration_key(), 64, 0.5, "float32")
    monkeypatch.setattr(calibrated, "measure", lambda runtime: old)
    load_or_measure(rt, path)
    new = Calibration(rt.calibration_key(), 64, 0.5 * ratio, "float32")
    monkeypatch.setattr(calibrated, "measure", lambda runtime: new)
    cal, use = load_or_measure(rt, path, recalibrate=recalibrate,
                               check_fn=lambda runtime, c: c.iter_ms * ratio)
    assert cal == new and use.source == source and use.cached_ms == 0.5
    entry = json.loads(path.read_text())["entries"][rt.calibration_key()]
    assert entry["iter_ms"] == pytest.approx(0.5 * ratio)


@pytest.mark.parametrize("content", ["{not json", '{"version": 1, "entries": {"x": 1}}',
                                     '{"version": 99}', "[]"])
def test_a_broken_or_foreign_cache_is_measured_again_and_rewritten(tmp_path, monkeypatch,
                                                                   content):
    path = tmp_path / "calibration.json"
    path.write_text(content)
    rt = CpuRuntime(STAGES, 1)
    monkeypatch.setattr(calibrated, "measure",
                        lambda runtime: Calibration(runtime.calibration_key(), 64, 0.5, "float32"))
    cal, use = load_or_measure(rt, path)
    assert use.source == "measured" and cal.iter_ms == 0.5
    assert json.loads(path.read_text())["entries"][rt.calibration_key()]["n"] == 64


def test_stage_threads_use_their_own_intra_op_thread_count():
    rt = CpuRuntime(STAGES, 1)
    before = torch.get_num_threads()
    seen = calibrated.in_stage_thread(rt, torch.get_num_threads)
    rt.close()
    assert seen == 1 and torch.get_num_threads() == before


def test_bad_executor_options_name_their_field(tmp_path):
    sc = make_scenario({"name": "serial"}, {"build": 1, "denoise": 1, "decode": 1}, chunks=2)
    cases = [
        (ReplayOptions(device="tpu"), "--device: unknown device 'tpu' (allowed: cpu, cuda)"),
        (ReplayOptions(kernels="fast", calibration_path=tmp_path / "c.json"),
         "--kernels: unknown kernels 'fast' (allowed: calibrated, model, spin)"),
        (ReplayOptions(kernels="model", model_size="huge"), "--model-size: unknown size"),
        (ReplayOptions(threads=0), "--threads: must be >= 1"),
        (ReplayOptions(timeout_s=0), "--timeout: must be > 0"),
    ]
    for opts, message in cases:
        with pytest.raises(ExecConfigError) as info:
            replay(sc, opts)
        assert str(info.value).startswith(message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_a_gpu_is_bad_input():
    with pytest.raises(ExecConfigError, match=r"^--device: cuda requested but"):
        open_runtime("cuda", STAGES, 1)


def test_fault_spec_parsing():
    assert Fault.parse("denoise:3") == Fault("denoise", 3)
    assert Fault.parse("stage0:decode:12") == Fault("decode", 12, "stage0")
    with pytest.raises(ExecConfigError, match=r"^--inject: 'denoise' is not PHASE:CHUNK"):
        Fault.parse("denoise")
