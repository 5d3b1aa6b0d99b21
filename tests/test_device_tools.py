"""The device check's helpers (issue 23): the core plan of its lanes, the summary's
target judgement, the wheels to carry, and the bench options the check relies on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def load(path: str) -> ModuleType:
    """A script or bench module by path (neither folder is a package)."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


cores = load("scripts/device_cores.py")
summary = load("scripts/device_summary.py")
wheels = load("scripts/device_wheels.py")
sys.path.insert(0, str(ROOT / "bench"))  # fidelity_oos imports nothing from bench/, but
fidelity_oos = load("bench/fidelity_oos.py")  # fidelity.py's sibling imports expect it
oos_figures = load("bench/oos_figures.py")


# ---------------------------------------------------------------- the core plan

def smt_siblings(n: int, threads: int) -> dict[int, frozenset[int]]:
    """n cpus, ``threads`` per physical core, numbered as Linux does (c, c + n/threads)."""
    per = n // threads
    return {c: frozenset(c % per + k * per for k in range(threads)) for c in range(n)}


def test_plan_of_a_16_cpu_smt_machine_by_hand():
    busy = {3: 0.9, 11: 0.9}  # physical core 3 is busy
    p = cores.plan(list(range(16)), smt_siblings(16, 2), busy)
    # 8 physical cores: (0, 8) kept for the system, (3, 11) the busiest goes to cuda last
    assert p.concurrent
    assert p.separate == (1, 2) and p.shared == (4,)
    assert p.sets == {"separate": (1, 2, 5, 13), "shared": (4, 6, 14), "cuda": (3, 7, 11, 15)}
    # siblings 9, 10 (of the separate stages) and 12 (of the shared one) are in no lane


def test_plan_of_a_small_machine_runs_lanes_one_after_another():
    p = cores.plan([0, 1], smt_siblings(2, 1), {0: 0.5, 1: 0.1})
    assert not p.concurrent and p.sets == {}
    assert p.separate == (1, 0) and p.shared == (1,)
    one = cores.plan([0], smt_siblings(1, 1), {})
    assert one.separate == () and one.shared == (0,)


@given(st.integers(1, 16), st.sampled_from([1, 2]),
       st.lists(st.floats(0, 1), min_size=32, max_size=32))
def test_plan_invariants(physical, threads, loads):
    n = physical * threads
    sib = smt_siblings(n, threads)
    busy = {c: loads[c] for c in range(n)}
    p = cores.plan(list(range(n)), sib, busy)
    assert p.concurrent == (physical >= sum(cores.NEED.values()))
    if not p.concurrent:
        assert p.sets == {}
        assert p.shared == (min(range(n), key=lambda c: (busy[c], c)),)
        assert len(set(p.separate)) == (2 if n >= 2 else 0)
        return
    lanes = list(p.sets.values())
    flat = [c for lane in lanes for c in lane]
    assert len(flat) == len(set(flat))  # disjoint
    assert set(p.separate) <= set(p.sets["separate"]) and set(p.shared) <= set(p.sets["shared"])
    stages = (*p.separate, *p.shared)
    assert len({frozenset(sib[c]) for c in stages}) == 3  # three physical cores
    for c in stages:  # nothing else runs on a stage core's physical core
        assert not (sib[c] - {c}) & set(flat)

    def load_of(c: int) -> float:
        return sum(busy[x] for x in sib[c]) / len(sib[c])
    others = [c for c in p.sets["cuda"]]
    assert max(load_of(c) for c in stages) <= min(load_of(c) for c in others) + 1e-12


# ---------------------------------------------------------------- the summary

def write_run(work: Path, records: list[tuple[str, str]], figures: dict[str, Any]) -> None:
    (work / "figures").mkdir(parents=True)
    (work / "steps.tsv").write_text("".join(
        f"{name}\tlane\t{status}\t0\t3\t{'' if status == 'ok' else 'why'}\n"
        for name, status in records))
    for fname, data in figures.items():
        (work / "figures" / fname).write_text(json.dumps(data))


def oos_fig(layout: str, median: float, mx: float, ovl: float | None) -> dict[str, Any]:
    stats = {"n": 11, "period_err_median": median, "period_err_max": mx,
             "overlap_err_median": ovl, "overlap_err_max": ovl}
    return {"layouts": {layout: {"all": stats, "steady": stats, "trusted": stats}}}


def diff_fig(rel: float) -> dict[str, Any]:
    return {"metrics": {"period_ms": {"predicted": 100.0, "measured": 100.0 * (1 + rel),
                                      "rel_error": -rel},
                        "overlap_score": {"predicted": 1.0, "measured": 0.98,
                                          "abs_error": -0.02}},
            "status": "agree", "verdict": "agree: ..."}


def test_targets_are_judged_from_the_figures(tmp_path):
    write_run(tmp_path, [("oos_separate", "ok"), ("oos_shared", "ok"),
                         ("cuda_oos_phase_pp", "ok"), ("cuda_shared_default", "failed")],
              {"oos_separate.oos.json": oos_fig("separate", 0.015, 0.049, 0.03),
               "oos_shared.oos.json": oos_fig("shared", 0.021, 0.03, None),
               "cuda_oos_phase_pp.oos.json": oos_fig("shared", 0.01, 0.031, 0.01),
               "cuda_shared_default.diff.json": diff_fig(0.01)})
    s = summary.summarize(tmp_path, {"device": "cuda"})
    met = {(t["step"], t["what"].rsplit(" ", 1)[-1]): t["met"] for t in s["targets"]}
    assert met[("oos_separate", "median")] is True and met[("oos_separate", "max")] is True
    assert met[("oos_shared", "median")] is False      # 2.1 % > 2 %
    assert s["targets"][5]["value"] is None and s["targets"][5]["met"] is None  # no overlap
    assert met[("cuda_oos_phase_pp", "max")] is False  # 3.1 % > 3 %
    assert met[("cuda_shared_default", "error")] is None  # its step failed: not measured
    assert not s["steps_ok"] and s["targets_met"] is False and not s["ok"]
    text = summary.render(s)
    assert "NOT MET" in text and "not measured" in text and "device check: FAILED" in text


def test_a_dry_run_shows_targets_without_judging_them(tmp_path):
    write_run(tmp_path, [("oos_shared", "ok"), ("cuda_fault", "skipped")],
              {"oos_shared.oos.json": oos_fig("shared", 0.5, 0.9, 0.4)})
    s = summary.summarize(tmp_path, {"device": "cpu", "dry": True})
    assert all(t["met"] is None for t in s["targets"])
    assert s["steps_ok"] and s["targets_met"] is None and s["ok"]


def test_diff_figures_take_the_size_of_the_period_error():
    d = summary.diff_figures(diff_fig(0.025))
    assert d["period_err"] == pytest.approx(0.025) and d["overlap_err"] == -0.02


# ---------------------------------------------------------------- the wheels

def test_wheel_requirements_are_pipefills_closure_at_this_venvs_versions():
    pins = wheels.requirements("3.12")
    for name in ("simpy", "pydantic", "pydantic-core", "typer", "click", "dask",
                 "distributed", "tornado", "setuptools"):
        assert pins[name] == metadata.version(name)
    # torch and what only torch needs stay behind, and so do the image's large packages
    assert not {"torch", "sympy", "networkx", "triton"} & set(pins)
    assert not wheels.LARGE & set(pins)
    assert not any(n.startswith("nvidia") for n in pins)
    full = wheels.requirements("3.12", carry_all=True)
    assert set(full) >= wheels.LARGE and set(pins) <= set(full)


def test_wheel_requirements_are_closed_under_their_own_requirements():
    env = wheels.target_env("3.12")
    full = wheels.requirements("3.12", carry_all=True)
    for name in full:
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            assert canonicalize_name(req.name) in {*full, "torch"}, (name, line)


def test_wheels_script_prints_pins():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "device_wheels.py")],
                         capture_output=True, text=True, timeout=60, check=True)
    lines = res.stdout.split()
    assert f"simpy=={metadata.version('simpy')}" in lines
    assert all("==" in line for line in lines)


# ---------------------------------------------------------------- the bench options

def test_bench_selects_points_and_pins_the_separate_layout():
    labels = [p[0] for p in fidelity_oos.points(("phase_pp",))]
    assert len(labels) == len(fidelity_oos.PHASE_PP) and all("phase_pp" in x for x in labels)
    assert [p[0] for p in fidelity_oos.points(("stream_batch", "phase_pp r1 2x2"))] == [
        "phase_pp r1 2x2 lag0", "stream_batch"]
    pinned = fidelity_oos.layouts("cpu", (3, 5))
    assert pinned["separate"] == {
        "placement": {"stage0": "cpu0", "stage1": "cpu1"},
        "devices": {"cpu0": {"cores": [3]}, "cpu1": {"cores": [5]}}}
    assert pinned["shared"]["devices"] == {"cpu0": {"cores": [3]}}
    assert fidelity_oos.layouts("cpu")["separate"] == {}  # unpinned, as before


def test_bench_figures_by_hand():
    table = pd.DataFrame({
        "layout": ["separate"] * 4, "after_err": [0.01, 0.03, 0.02, 0.06],
        "after_ovl_err": [0.01, float("nan"), 0.02, 0.04], "before_err": [0.1] * 4,
        "norm_err": [0.0] * 4, "steady": [True, True, False, True],
        "ok": [False] * 4})
    f = oos_figures.figures(table)["layouts"]["separate"]
    assert f["all"]["n"] == 4 and f["all"]["period_err_median"] == pytest.approx(0.025)
    assert f["all"]["period_err_max"] == 0.06 and f["all"]["overlap_err_max"] == 0.04
    assert f["steady"]["n"] == 3 and f["steady"]["period_err_median"] == pytest.approx(0.03)
    assert f["trusted"] == {**f["trusted"], "n": 0, "period_err_median": None}


def test_bench_rejects_an_unknown_ratio():
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "fidelity.py"), "--mode", "oos",
                          "--ratios", "s2-bound"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "--ratios: unknown 's2-bound' (known: s1-bound, s0-bound)" in res.stderr
