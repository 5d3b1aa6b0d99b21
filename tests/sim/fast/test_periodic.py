"""Long fast-path runs from a repeating period, fed block by block: the SimPy engine's
numbers, whatever the blocks."""

from __future__ import annotations

import pytest

from pipefill.sim.engine.stream import simulate_summary
from pipefill.sim.fast import run as fast_run
from pipefill.sim.fast.periodic import find_period
from pipefill.sim.fast.run import run_batch
from pipefill.sim.scenario.load import load_scenario

CASES = {
    "default": [],
    "coupled": ["policy.recompute_lag=0"],
    "serial_every_3": ['policy.name="serial"', 'policy.recompute="r0a"',
                       "policy.recompute_every=3"],
    "layer_pp": ['policy={name="layer_pp",stages=3,items=4}'],
    "stream_batch": ['policy={name="stream_batch",stages=2,steps=3}'],
    "rolling_window": ['policy={name="rolling_window",window=3}'],
    "realtime": ['policy.name="serial"', 'run.source="realtime"', "run.fps_in=90.0"],
    "overloaded": ['policy={name="rolling_window",window=3}', 'run.source="realtime"',
                   "run.fps_in=2000.0"],
    "deadlines_auto": ["run.target_fps=70.0", 'run.warmup="auto"'],
}


def _sc(case: str, chunks: int):
    return load_scenario(None, [*CASES[case], f"run.chunks={chunks}", "costs.denoise.cv=0.2",
                                "costs.decode.cv=0.2"])


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return a == b


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_periodic_run_equals_simpy(case, monkeypatch):
    sc = _sc(case, 250)
    per = find_period(sc, 250)
    assert per is not None and per.reps > 0  # 250 chunks from a few recorded ones
    monkeypatch.setattr(fast_run, "BLOCK_ELEMENTS", 900)  # many small blocks
    fast = run_batch([sc])[0]
    ref = simulate_summary(sc).metrics
    bad = [k for k in ref if k != "engine" and not _same(fast.get(k), ref.get(k))]
    assert bad == []


def test_blocks_of_any_size_and_batches_of_any_width_agree(monkeypatch):
    scs = [_sc("default", 400).model_copy(update={"run": _sc("default", 400).run.model_copy(
        update={"seed": s})}) for s in range(3)]
    whole = run_batch(scs)
    monkeypatch.setattr(fast_run, "BLOCK_ELEMENTS", 500)
    alone = [run_batch([sc])[0] for sc in scs]
    for a, b in zip(whole, alone, strict=True):
        assert _same(a, b)
