"""Multi-rank schedules on real ranks: measured vs simulated period, per rank parallelism.

For Stream Batch (W = 2..4 ranks in a ring, n = 2 steps in flight, max_outstanding 2)
and layer pipelining (P = 2..4 ranks, M = 2 items a batch): replay the scenario with
``--backend dist`` on gloo with calibrated kernels (one process per rank on this
machine), simulate the same scenario, and print the measured and simulated period
(mean emit gap after the warm-up) and their ratio. For each rank it prints the share
of a core it had while computing (``meta.parallelism.device_share``) and how fast its
calibrated kernels ran against their calibration (``kernel_speed`` per CPU second,
1.00 = as calibrated; far from 1 the calibration was measured under another load).

The link is modelled as gloo loopback measured by ``bench/bench_transport.py``
(0.69 ms + 0.90 GB/s) with 64 KiB activations, so the simulated period includes
transport; calibrated kernels move the message's bytes for real.

Trust: W or P busy ranks need as many free cores. A machine with fewer cores than
ranks (the 2-core development machine cannot run 3 or 4 busy ranks in parallel) time-
shares them, and the measured period is then longer than the schedule's: the row's
``trust`` column says so, with the replay's own warnings. Nothing here asserts a speed.

    .venv/bin/python bench/bench_dist_layouts.py [--chunks 16] [--denoise-ms 24]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from pipefill.exec.backends import ReplayRequest, replay_to_file
from pipefill.exec.dist.config import DistOptions
from pipefill.exec.threads.replay import ReplayOptions
from pipefill.sim.engine.core import simulate
from pipefill.sim.scenario.load import build_scenario
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.metrics import compute_metrics

#: gloo loopback on this machine (bench/bench_transport.py)
TRANSPORT = {"latency_ms": 0.69, "bandwidth_gbps": 0.9, "result_bytes": 65536,
             "envelope_bytes": 65536}


def scenario(policy: dict[str, Any], chunks: int, denoise_ms: float) -> Scenario:
    raw = {"run": {"chunks": chunks, "warmup": 4, "seed": 0},
           "policy": policy,
           "costs": {"denoise": {"mean": denoise_ms, "steps": 2},
                     "decode": {"mean": denoise_ms / 4}, "encode": {"mean": denoise_ms / 8}},
           "transport": TRANSPORT}
    return build_scenario(raw, name=f"{policy['name']}-{policy['stages']}")


def cases(chunks: int, denoise_ms: float) -> list[Scenario]:
    out = []
    for ranks in (2, 3, 4):
        out.append(scenario({"name": "stream_batch", "stages": ranks, "blocks": 12,
                             "steps": 2, "max_outstanding": 2,
                             "activation_bytes": 65536}, chunks, denoise_ms))
    for ranks in (2, 3, 4):
        out.append(scenario({"name": "layer_pp", "stages": ranks, "blocks": 12, "items": 2,
                             "activation_bytes": 65536}, chunks, denoise_ms))
    return out


def measure(sc: Scenario, cal: Path, tmp: Path) -> dict[str, Any]:
    opts = ReplayOptions(kernels="calibrated", calibration_path=cal, timeout_s=30.0,
                         recheck_calibration=False)
    out = tmp / f"{sc.name}.parquet"
    outcome = replay_to_file(ReplayRequest(sc, opts, DistOptions(), None, out), "dist")
    if outcome.trace is None:
        return {"error": outcome.error}
    trace = outcome.trace
    trust = trace.meta.get("parallelism") or {}
    return {"period": compute_metrics(trace)["period_ms"],
            "share": trust.get("device_share", {}), "speed": trust.get("kernel_speed", {}),
            "parallel": trust.get("parallel"), "warnings": trust.get("warnings", [])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--denoise-ms", type=float, default=24.0)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    print(f"dist replays on gloo, calibrated kernels, {cores} CPU cores on this machine")
    print(f"{'scenario':<16} {'ranks':>5} {'sim ms':>7} {'meas ms':>7} {'ratio':>5}  "
          f"{'trust':<12} per rank: core share while computing / kernel speed")
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pipefill-bench-") as tmp:
        cal = Path(tmp) / "calibration.json"
        for sc in cases(args.chunks, args.denoise_ms):
            ranks = sc.policy.params()["stages"]
            sim = compute_metrics(simulate(sc))["period_ms"]
            got = measure(sc, cal, Path(tmp))
            if "error" in got:
                print(f"{sc.name:<16} {ranks:>5} {sim:>8.2f}   failed: {got['error']}")
                continue
            trust = "parallel" if got["parallel"] else "NOT parallel"
            if ranks > cores:
                trust = f"> {cores} cores"
            speeds = list(got["speed"].values())
            shares = " ".join(f"{r}={s:.0%}/{v:.2f}" for (r, s), v in
                              zip(sorted(got["share"].items()), speeds, strict=False))
            print(f"{sc.name:<16} {ranks:>5} {sim:>7.2f} {got['period']:>7.2f} "
                  f"{got['period'] / sim:>5.2f}  {trust:<12} {shares}")
            if any(abs(v - 1.0) > 0.1 for v in speeds):
                notes.append(f"{sc.name}: kernels ran at {min(speeds):.2f}-{max(speeds):.2f}x "
                             "their calibrated speed per CPU second (calibrated under another "
                             "load): the simulated period does not describe these kernels")
            notes += [f"{sc.name}: {w}" for w in got["warnings"]]
    print(f"\ntrust: {cores} cores cannot run more than {cores} busy ranks at once; rows "
          f"with more ranks (or 'NOT parallel') time-shared the cores, so their measured "
          "period is the machine's, not the schedule's.")
    for note in notes:
        print(f"warning: {note}")


if __name__ == "__main__":
    main()
