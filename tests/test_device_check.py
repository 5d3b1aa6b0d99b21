"""The device check's CPU dry run (issue 23): ``DEVICE=cpu scripts/device_check.sh`` runs
every CPU step for real at tiny sizes, rehearses some CUDA steps' commands on the CPU,
skips the others with "no CUDA", and writes a summary with a status for every step, so
the script cannot rot before a GPU machine is lent. Also: a failing step does not stop
the run, a step past its limit is "timed out", a spent budget skips steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device_check.sh"
#: every step, in the order the summary lists them
STEPS = ["install", "imports", "cores", "oos_separate", "oos_shared", "cuda_default_spin",
         "cuda_default_model", "cuda_stream_batch_spin", "cuda_stream_batch_model",
         "cuda_shared_default", "cuda_oos_phase_pp", "dist_spin", "dist_fault", "cuda_fault"]
CPU_STEPS = {"install", "imports", "cores", "oos_separate", "oos_shared"}
#: CUDA steps whose commands the test rehearses on the CPU (the others are skipped): the
#: model replay + calibrate + diff path, the shared-GPU prediction, the GPU bench, a dist
#: fault and a threads fault
REHEARSED = {"cuda_default_model", "cuda_shared_default", "cuda_oos_phase_pp", "dist_fault",
             "cuda_fault"}
STATUSES = {"ok", "failed", "timed out", "skipped"}


def run_check(out: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    full = {**os.environ, "DEVICE": "cpu", "OUT": str(out), "PYTHON": sys.executable, **env}
    res = subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True,
                         timeout=400, cwd=ROOT)
    summary = json.loads((out / "summary.json").read_text())
    return res, summary


def by_name(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in summary["steps"]}


def test_dry_run_runs_the_cpu_steps_and_reports_every_step(tmp_path):
    out = tmp_path / "out"
    # a generous budget: on a loaded machine the dry run must not skip steps for time
    res, summary = run_check(out, REHEARSE=",".join(sorted(REHEARSED)), BUDGET_S="400")
    assert res.returncode == 0, res.stdout + res.stderr
    steps = by_name(summary)
    assert [s["name"] for s in summary["steps"]] == STEPS
    assert all(s["status"] in STATUSES for s in summary["steps"])
    for name in CPU_STEPS | REHEARSED:
        assert steps[name]["status"] == "ok", steps[name]
    for name in set(STEPS) - CPU_STEPS - REHEARSED:
        assert steps[name]["status"] == "skipped", steps[name]
        assert steps[name]["reason"].startswith("no CUDA"), steps[name]
    for name in REHEARSED:
        assert steps[name]["reason"].startswith("rehearsed on the CPU"), steps[name]
    # the CPU benches measured their points: 1 ratio x 3 points per layout
    for layout in ("separate", "shared"):
        stats = steps[f"oos_{layout}"]["figures"]["oos"]["layouts"][layout]["all"]
        assert stats["n"] == 3 and stats["period_err_median"] is not None
    gpu_oos = steps["cuda_oos_phase_pp"]["figures"]["oos"]["layouts"]["shared"]["all"]
    assert gpu_oos["n"] == 2
    diff = steps["cuda_shared_default"]["figures"]["diff"]
    assert diff["period_meas"] > 0 and diff["period_pred"] > 0 and diff["status"]
    for name in ("dist_fault", "cuda_fault"):
        assert steps[name]["figures"]["fault"]["as_expected"], steps[name]
    assert steps["imports"]["figures"]["imports"]["missing"] == {}
    # targets are listed, not judged, in a dry run
    assert summary["run"]["dry"] and summary["steps_ok"] and summary["ok"]
    assert {t["step"] for t in summary["targets"]} >= {"oos_separate", "cuda_oos_phase_pp",
                                                       "cuda_shared_default"}
    assert all(t["met"] is None for t in summary["targets"])
    # what comes back from a device call: at most 8 files, the work folder archived
    assert sorted(p.name for p in out.iterdir()) == ["artifacts.tar.gz", "device_check.log",
                                                      "summary.json"]
    with tarfile.open(out / "artifacts.tar.gz") as tar:
        names = tar.getnames()
    assert "./steps.tsv" in names and "./logs/oos_separate.log" in names
    log = (out / "device_check.log").read_text()
    assert all(f"=== {name} " in log for name in CPU_STEPS | REHEARSED)
    assert "device check: OK" in res.stdout and "device check: OK" in log


def test_a_failing_step_does_not_stop_the_run(tmp_path):
    # no Python at all: install and imports fail, the core plan still runs, the rest is
    # skipped with the reason, and the run exits 1 with its summary
    res, summary = run_check(tmp_path / "out", PYTHON="/bin/false")
    assert res.returncode == 1, res.stdout + res.stderr
    steps = by_name(summary)
    assert [s["name"] for s in summary["steps"]] == STEPS
    assert steps["install"]["status"] == "failed" and steps["install"]["reason"].startswith(
        "exit ")
    assert steps["imports"]["status"] == "failed"
    assert steps["cores"]["status"] == "ok"
    for name in STEPS[3:]:
        assert steps[name]["status"] == "skipped"
        assert steps[name]["reason"] == "imports failed (see the imports step)"
    assert not summary["steps_ok"] and not summary["ok"]
    assert "device check: FAILED" in res.stdout


def test_limits_budget_and_selection(tmp_path):
    res, summary = run_check(tmp_path / "a", STEPS="imports", LIMIT_S="1")
    steps = by_name(summary)
    assert steps["imports"]["status"] == "timed out" and steps["imports"]["rc"] in (124, 137)
    assert steps["install"]["status"] == "skipped"
    assert steps["install"]["reason"] == "not selected (STEPS=imports)"
    assert res.returncode == 1
    # the whole run's budget: fewer seconds left than a step needs skips it
    res, summary = run_check(tmp_path / "b", STEPS="install", BUDGET_S="5")
    install = by_name(summary)["install"]
    assert install["status"] == "skipped" and install["reason"].startswith("time budget spent")
