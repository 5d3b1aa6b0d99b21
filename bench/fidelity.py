"""Fidelity of the simulator against the threads executor on CPU, and executor overhead.

For phase_pp with D_in, D_out in {1, 2, 3} x recompute in {r1, r0a} x two stage
imbalance ratios (phases of 20-80 ms): replay the scenario with calibrated kernels
(measured), fit a scenario to that trace (as `pipefill calibrate` does), simulate it
(predicted), and print the period error and the OverlapScore absolute error per point
with their median and max. Targets: median period error <= 5 % (aim 3 %) and median
OverlapScore error <= 0.05. The column `scen err` is the period error of simulating
the original scenario directly (no calibration), for reference; `cores` is how many
cores the two stage threads could use around the point (2.0 on an idle 2-core machine;
a shared machine gives less, and then the stages time-share a core and cannot
overlap): the summary is repeated over the points with >= 1.8.

Overhead: phase_pp r1, D_in = D_out = 2, measured period / max(measured stage0,
stage1) (median busy time per chunk), target <= 1.05.

Run: .venv/bin/python bench/fidelity.py [--chunks 30] [--scale 1.0] [--out table.csv]
(the default run takes about 3 minutes on 2 CPU cores).

``--mode oos``: out of sample (bench/fidelity_oos.py): calibrate from serial replays
(``--calibrate every``, the default: one before the first point and one after every
point, a point predicted from the two around it; ``once``: one per grid), predict
phase_pp and the other policies on separate and on shared devices (about 6 minutes
for both layouts on 2 cores).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from pipefill.exec.threads.replay import ReplayOptions, replay
from pipefill.exec.threads.trust import free_cores
from pipefill.sim.engine.core import simulate
from pipefill.sim.fit.calibrate import calibrate_trace
from pipefill.sim.scenario.load import build_scenario
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.io import write_table
from pipefill.traces.metrics import compute_metrics

#: stage costs (ms); stage0 = build + decode (+ encode), stage1 = 2 denoise steps (+ recompute)
RATIOS: dict[str, dict[str, float]] = {
    "s1-bound": {"build": 20.0, "decode": 40.0, "encode": 20.0, "denoise": 40.0,
                 "recompute": 25.0},
    "s0-bound": {"build": 25.0, "decode": 75.0, "encode": 20.0, "denoise": 25.0,
                 "recompute": 20.0},
}
PERIOD_TARGET, PERIOD_AIM, OVERLAP_TARGET, OVERHEAD_TARGET = 0.05, 0.03, 0.05, 1.05
#: a point measured with fewer free cores than this ran its stages on a shared core
QUIET_CORES = 1.8


def scenario(ratio: str, recompute: str, d_in: int, d_out: int, chunks: int,
             scale: float) -> Scenario:
    costs: dict[str, Any] = {p: {"dist": "lognormal", "mean": ms * scale, "cv": 0.05}
                             for p, ms in RATIOS[ratio].items()}
    costs["denoise"]["steps"] = 2
    raw = {
        "run": {"chunks": chunks, "warmup": 5, "seed": 1},
        "policy": {"name": "phase_pp", "d_in": d_in, "d_out": d_out, "recompute": recompute,
                   "recompute_lag": 1},
        "costs": costs,
        "transport": {"latency_ms": 0.05, "bandwidth_gbps": 20.0, "envelope_bytes": 600_000,
                      "result_bytes": 600_000, "context_bytes": 1_200_000},
    }
    return build_scenario(raw, name=f"fidelity-{ratio}-{recompute}-{d_in}x{d_out}")


def cores_free() -> float:
    """How many of two single-threaded matmul loops run in parallel right now (2.0 on an
    idle 2-core machine, about 1.0 when another process holds a core). The replay needs
    two: with less, the stages time-share a core and no schedule can overlap them."""
    return free_cores(2, n=192, iters=150)


def point(sc: Scenario, opts: ReplayOptions) -> dict[str, Any]:
    cores = cores_free()
    measured = replay(sc, opts)
    mm = compute_metrics(measured)
    mp = compute_metrics(simulate(calibrate_trace(measured).scenario))
    ms = compute_metrics(simulate(sc))
    return {
        "period_meas": mm["period_ms"], "period_pred": mp["period_ms"],
        "period_err": abs(mp["period_ms"] - mm["period_ms"]) / mm["period_ms"],
        "scen_err": abs(ms["period_ms"] - mm["period_ms"]) / mm["period_ms"],
        "overlap_meas": mm["overlap_score"], "overlap_pred": mp["overlap_score"],
        "overlap_err": abs(mp["overlap_score"] - mm["overlap_score"]),
        "overhead": mm["period_ms"] / max(mm["stage0_ms"], mm["stage1_ms"]),
        "cores": min(cores, cores_free()),
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def summarize(label: str, table: pd.DataFrame) -> None:
    per, ovl, scen = table["period_err"], table["overlap_err"], table["scen_err"]
    print(f"{label}:")
    print(f"  period error:       median {per.median():.2%}  max {per.max():.2%}  "
          f"(target median <= {PERIOD_TARGET:.0%}, aim {PERIOD_AIM:.0%}): "
          f"{verdict(per.median() <= PERIOD_TARGET)}")
    print(f"  OverlapScore error: median {ovl.median():.3f}  max {ovl.max():.3f}  "
          f"(target median <= {OVERLAP_TARGET}): {verdict(ovl.median() <= OVERLAP_TARGET)}")
    print(f"  scenario-only period error (no calibration): median {scen.median():.2%}  "
          f"max {scen.max():.2%}")


def _cores(text: str) -> tuple[int, ...]:
    return tuple(int(c) for c in text.split(","))


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def run_oos(ap: argparse.ArgumentParser, args: argparse.Namespace,
            opts: ReplayOptions) -> None:
    """``--mode oos``: the out-of-sample bench with the selection the options make."""
    # bench/ is not a package: sibling scripts
    from fidelity_oos import RATIOS as OOS_RATIOS
    from fidelity_oos import Selection, main_oos, points
    from oos_figures import write_figures

    if args.layout == "separate" and args.device == "cpu" and len(args.cores) == 1:
        ap.error("--cores: the separate layout pins two stages: give two cores (A,B)")
    unknown = [r for r in args.ratios if r not in OOS_RATIOS]
    if unknown:
        ap.error(f"--ratios: unknown {unknown[0]!r} (known: {', '.join(OOS_RATIOS)})")
    if not points(args.points):
        ap.error(f"--points: no point's label starts with {', '.join(args.points)}")
    print(f"load average {os.getloadavg()[0]:.2f}; cores free for two stages: "
          f"{cores_free():.2f} of 2")
    sel = Selection(cores=args.cores, ratios=args.ratios, points=args.points)
    table = main_oos(args.chunks, args.scale, opts, args.layout,
                     every=args.calibrate == "every", sel=sel)
    if args.out is not None:
        write_table(table, args.out, {"kind": "fidelity-oos", "chunks": args.chunks,
                                      "scale": args.scale})
    if args.summary_json is not None:
        write_figures(table, args.summary_json)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=30, help="chunks per point (warm-up 5)")
    ap.add_argument("--scale", type=float, default=None,
                    help="multiply every phase cost (default 1.0; oos 0.5)")
    ap.add_argument("--calibration", type=Path, default=None, help="calibration cache JSON")
    ap.add_argument("--out", type=Path, default=None, help="also write the table (.csv)")
    ap.add_argument("--mode", choices=("fit", "oos"), default="fit",
                    help="fit: calibrate each point from its own replay; oos: out of sample")
    ap.add_argument("--layout", choices=("separate", "shared"), default=None,
                    help="oos: only this layout (default both)")
    ap.add_argument("--calibrate", choices=("every", "once"), default="every",
                    help="oos: a fresh serial calibration replay before every point "
                         "(drift control), or one per grid")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="oos: cuda runs both stages on the one GPU (untested here)")
    ap.add_argument("--kernels", choices=("calibrated", "model"), default="calibrated",
                    help="oos: model = the DiT + VAE kernels (their own costs)")
    ap.add_argument("--cores", type=_cores, default=(),
                    help="oos: A,B pins the separate layout's stage0 to core A and stage1 to "
                         "core B; the shared layout runs on core A (default: unpinned / the "
                         "last available core)")
    ap.add_argument("--ratios", type=_names, default=(),
                    help="oos: only these stage imbalances (comma-separated; default all)")
    ap.add_argument("--points", type=_names, default=(),
                    help="oos: only the points whose label starts with one of these "
                         "(comma-separated, e.g. 'phase_pp,stream_batch'; default all)")
    ap.add_argument("--summary-json", type=Path, default=None,
                    help="oos: also write the error figures per layout as JSON")
    args = ap.parse_args()
    opts = ReplayOptions(calibration_path=args.calibration, timeout_s=60.0,
                         device=args.device, kernels=args.kernels)
    if args.scale is None:
        args.scale = 0.5 if args.mode == "oos" else 1.0
    if args.mode == "oos":
        run_oos(ap, args, opts)
        return
    rows = []
    t0 = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.2f}; cores free for the two stages: "
          f"{cores_free():.2f} of 2")
    print(f"{'ratio':9} {'rec':4} {'Din':>3} {'Dout':>4} {'meas ms':>8} {'pred ms':>8} "
          f"{'err':>6} {'scen err':>8} {'ovl meas':>8} {'ovl pred':>8} {'ovl err':>7} "
          f"{'cores':>5}")
    for ratio, rec, d_in, d_out in itertools.product(RATIOS, ("r1", "r0a"), (1, 2, 3), (1, 2, 3)):
        res = point(scenario(ratio, rec, d_in, d_out, args.chunks, args.scale), opts)
        rows.append({"ratio": ratio, "recompute": rec, "d_in": d_in, "d_out": d_out, **res})
        print(f"{ratio:9} {rec:4} {d_in:3d} {d_out:4d} {res['period_meas']:8.2f} "
              f"{res['period_pred']:8.2f} {res['period_err']:6.1%} {res['scen_err']:8.1%} "
              f"{res['overlap_meas']:8.3f} {res['overlap_pred']:8.3f} {res['overlap_err']:7.3f} "
              f"{res['cores']:5.2f}", flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{len(table)} points in {time.perf_counter() - t0:.0f} s")
    summarize("all points", table)
    quiet = table[table["cores"] >= QUIET_CORES]
    if 0 < len(quiet) < len(table):
        summarize(f"{len(quiet)} points with >= {QUIET_CORES} cores free", quiet)
    over = [point(scenario(r, "r1", 2, 2, args.chunks * 2, args.scale), opts)["overhead"]
            for r in RATIOS]
    print("overhead (phase_pp r1 D=2/2, period / max(stage0, stage1)): "
          + ", ".join(f"{r} {o:.3f}" for r, o in zip(RATIOS, over, strict=True))
          + f"; worst {max(over):.3f} (target <= {OVERHEAD_TARGET}): "
          f"{verdict(max(over) <= OVERHEAD_TARGET)}")
    if args.out is not None:
        write_table(table, args.out, {"kind": "fidelity", "chunks": args.chunks,
                                      "scale": args.scale})


if __name__ == "__main__":
    main()
