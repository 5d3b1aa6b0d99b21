"""Out-of-sample fidelity (``bench/fidelity.py --mode oos``): calibrate from serial
replays, predict every other policy.

Per layout (``separate``: each stage a device of its own, its thread pinned to a core of
its own with ``--cores A,B``, unpinned as before without; ``shared``: both stages on one
device pinned to one core) and per stage imbalance:

1. replay the *serial* policy (nothing overlaps) and calibrate solo costs and dispatch
   gaps from it; on the shared layout probe the core's contention rate (``calibrate
   --probe-contention``, once per grid);
2. predict, with those costs only, phase_pp over D_in/D_out 1-3, recompute_lag 0-2 and
   r1/r0a, and every other policy the threads backend runs (stream_batch, layer_pp,
   rolling_window, multi_session); replay each and compare. With ``every`` (default)
   step 1 runs again after every point and a point is predicted from the two serial
   replays around it (A-B-A, see :class:`Grid`); ``steady`` rows are those whose
   kernels ran at one speed through all three.

Overlap error: OverlapScore for phase_pp, overlap_window for the other policies.
``after``: the prediction with the layout's devices; ``before``: today's model without
them (every stage on a device of its own). ``trust`` is ok when neither the point's
replay nor the serial calibration replays around it had a parallelism warning. Period =
mean emit gap over chunks warm-up..end (DESIGN.md), OverlapScore from
``compute_metrics``. Targets: median period error <= 2 %, max <= 5 %, OverlapScore
error <= 0.05 (max), both layouts.

Before the grids the bench times the calibrated kernel ten times back to back and
prints the spread (``stability``): a machine whose cores change speed by more than the
targets within seconds (a VM on a busy host) moves the truth between the calibration
and the points, and no model can follow that.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from pipefill.exec.kernels.calibrated import in_stage_thread, load_or_measure, quick_check
from pipefill.exec.threads.placement import available_cores
from pipefill.exec.threads.probe import probe_contention
from pipefill.exec.threads.replay import ReplayOptions, replay
from pipefill.exec.threads.runtime import open_runtime
from pipefill.sim.engine.core import simulate
from pipefill.sim.fit.calibrate import calibrate_trace
from pipefill.sim.scenario.load import build_scenario
from pipefill.traces.metrics import compute_metrics

#: stage costs (ms) before --scale; stage0 = build + decode (+ encode), stage1 = 2 denoise
#: steps (+ recompute)
RATIOS: dict[str, dict[str, float]] = {
    "s1-bound": {"build": 20.0, "decode": 40.0, "encode": 20.0, "denoise": 40.0,
                 "recompute": 25.0},
    "s0-bound": {"build": 25.0, "decode": 75.0, "encode": 20.0, "denoise": 25.0,
                 "recompute": 20.0},
}
#: phase_pp points: (recompute, d_in, d_out, recompute_lag)
PHASE_PP = [("r1", 1, 1, 0), ("r1", 2, 2, 0), ("r1", 3, 3, 0), ("r1", 1, 3, 0),
            ("r1", 3, 1, 0), ("r0a", 1, 1, 0), ("r0a", 2, 2, 0), ("r0a", 2, 2, 1),
            ("r0a", 3, 3, 1), ("r0a", 3, 3, 2), ("r0a", 2, 3, 2)]
#: the other policies the threads backend runs (two stages each)
OTHERS: dict[str, dict[str, Any]] = {
    "stream_batch": {"name": "stream_batch", "stages": 2},
    "layer_pp": {"name": "layer_pp", "stages": 2, "items": 2},
    "rolling_window": {"name": "rolling_window", "window": 2, "d_in": 1, "d_out": 2},
    "multi_session": {"name": "multi_session", "d_in": 2, "d_out": 2, "max_batch": 2},
}
TARGET_MEDIAN, TARGET_MAX, TARGET_OVERLAP = 0.02, 0.05, 0.05
#: the serial calibration replay runs this many times a point's chunks
SERIAL_CHUNKS = 3
#: a point is steady when the kernel speeds of its two bracketing calibrations, and its
#: own against their mean, agree within this fraction
STEADY = 0.02


@dataclass(frozen=True)
class Selection:
    """What a run of the bench covers (the defaults: everything, unpinned)."""

    #: separate layout: stage0 and stage1 pinned to cores[0] and cores[1]; shared: cores[0]
    cores: tuple[int, ...] = ()
    #: only the ratios named (keys of RATIOS); empty = all
    ratios: tuple[str, ...] = ()
    #: only the points whose label starts with one of these; empty = all
    points: tuple[str, ...] = ()


def layouts(device: str = "cpu", cores: tuple[int, ...] = ()) -> dict[str, dict[str, Any]]:
    """CPU: separate and shared (one core). With ``cores``, separate pins stage0 to
    ``cores[0]`` and stage1 to ``cores[1]`` (each a device of its own, so nothing of one
    stage runs on the other's core) and shared uses ``cores[0]``; without, separate is
    unpinned (as before) and shared uses the last available core. CUDA: both stages on
    the one GPU, a stream each (separate GPUs per stage are not implemented)."""
    if device == "cuda":
        return {"shared": {"placement": {"stage0": "gpu0", "stage1": "gpu0"}}}
    core = cores[0] if cores else available_cores()[-1]
    separate: dict[str, Any] = {}
    if len(cores) >= 2:
        separate = {"placement": {"stage0": "cpu0", "stage1": "cpu1"},
                    "devices": {"cpu0": {"cores": [cores[0]]}, "cpu1": {"cores": [cores[1]]}}}
    return {"separate": separate,
            "shared": {"placement": {"stage0": "cpu0", "stage1": "cpu0"},
                       "devices": {"cpu0": {"cores": [core]}}}}


def base_raw(ratio: str, chunks: int, scale: float) -> dict[str, Any]:
    costs: dict[str, Any] = {p: {"dist": "lognormal", "mean": ms * scale, "cv": 0.05}
                             for p, ms in RATIOS[ratio].items()}
    costs["denoise"]["steps"] = 2
    return {"run": {"chunks": chunks, "warmup": 5, "seed": 1},
            "costs": costs,
            "transport": {"latency_ms": 0.05, "bandwidth_gbps": 20.0,
                          "envelope_bytes": 600_000, "result_bytes": 600_000,
                          "context_bytes": 1_200_000}}


def points(only: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(label, policy table, run overrides) of every predicted point (with ``only``: those
    whose label starts with one of its prefixes)."""
    out: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (f"phase_pp {rec} {d_in}x{d_out} lag{lag}",
         {"name": "phase_pp", "d_in": d_in, "d_out": d_out, "recompute": rec,
          "recompute_lag": lag}, {}) for rec, d_in, d_out, lag in PHASE_PP]
    for name, pol in OTHERS.items():
        out.append((name, pol, {"sessions": 2} if name == "multi_session" else {}))
    return [p for p in out if not only or p[0].startswith(only)]


def mean_period(trace: Any, warmup: int) -> float:
    """Mean emit gap over chunks >= warmup (all sessions' emits, in time order)."""
    emits = trace.marks("emit")
    t = emits[emits["chunk"] >= warmup]["start_ms"].sort_values().to_numpy()
    return float((t[-1] - t[0]) / (len(t) - 1))


def _overlap(trace: Any) -> float | None:
    """OverlapScore where it is meaningful (one chunk at a time per stage, in order:
    phase_pp); overlap_window for the other policies (DESIGN.md)."""
    m = compute_metrics(trace)
    key = "overlap_score" if trace.meta.get("policy", {}).get("name") == "phase_pp" \
        else "overlap_window"
    value = m.get(key)
    return None if value is None else float(value)


@dataclass(frozen=True)
class Calibration:
    """One serial calibration replay: the fitted scenario table, the kernels' speed
    during it (calibrated ms of work per CPU ms, mean over stages) and its trust."""

    fitted: dict[str, Any]
    speed: float
    ok: bool


def kernel_speed(trace: Any) -> float:
    """Mean over stages of the calibrated kernels' speed the replay recorded (nan for
    other kernel families): the machine's speed while the replay ran."""
    speeds = list(trace.meta.get("parallelism", {}).get("kernel_speed", {}).values())
    return float(statistics.fmean(speeds)) if speeds else float("nan")


def blend(a: Any, b: Any) -> Any:
    """The mean of two fitted tables of one shape: floats averaged, everything else (a
    distribution's name, a step count) taken from ``a``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: blend(v, b[k]) if k in b else v for k, v in a.items()}
    if isinstance(a, float) and isinstance(b, float):
        return (a + b) / 2.0
    return a


class Grid:
    """One layout x ratio: serial calibrations and the points predicted from them.

    ``every`` (default): the A-B-A design of a drift-controlled benchmark. A serial
    calibration replay runs before the first point and after every point; a point is
    predicted from the blend of the two that bracket it and is ``steady`` when their
    kernel speeds and its own agree within STEADY. Still out of sample: a point's own
    policy never feeds its prediction. Otherwise one serial replay, three points long,
    calibrates the whole grid.
    """

    def __init__(self, layout: str, ratio: str, chunks: int, scale: float,
                 opts: ReplayOptions, cores: tuple[int, ...] = (),
                 only: tuple[str, ...] = ()) -> None:
        self.layout, self.ratio, self.opts, self.only = layout, ratio, opts, only
        self.devices = layouts(opts.device, cores)[layout]
        self.base = {**base_raw(ratio, chunks, scale), **self.devices}
        self.probe: dict[str, tuple[dict[int, float], str]] | None = None

    def calibrate(self, chunks_x: int, verbose: bool = False) -> Calibration:
        """Solo costs from a serial replay ``chunks_x`` times as long as a point, plus
        the probed rate on a shared device (probed once per grid: a rate is a ratio of
        two speeds, so drift cancels)."""
        run = {**self.base["run"], "chunks": chunks_x * self.base["run"]["chunks"]}
        serial = build_scenario({**self.base, "run": run,
                                 "policy": {"name": "serial", "recompute": "r0a"}})
        trace = replay(serial, self.opts)
        trust = trace.meta.get("parallelism", {})
        ok = bool(trust.get("parallel", False))
        placement = self.devices.get("placement", {})
        shared = placement and len(set(placement.values())) == 1
        if self.probe is None and shared and self.opts.kernels == "calibrated":
            dev = placement["stage0"]
            cores = (self.devices.get("devices") or {}).get(dev, {}).get("cores")
            res = probe_contention(self.opts.device, tuple(cores) if cores else None, 2,
                                   self.opts.calibration_path)
            self.probe = {dev: (res.rates, res.describe(dev))}
        # model kernels: the rates are fitted from the overlapped spans of the points' own
        # kind of work instead (a matmul probe would not contend like DiT vs VAE)
        cal = calibrate_trace(trace, probed=self.probe)
        if verbose:
            print(f"# {self.layout} {self.ratio}: serial calibration replay "
                  f"{'ok' if ok else 'WARN'} (device share {trust.get('device_share')}, "
                  f"free cores {trust.get('free_cores_before')})")
            for gap in cal.dispatch:
                print(f"# {gap.describe()}")
            for _rates, note in (self.probe or {}).values():
                print(f"# {note}")
        fitted = {k: v for k, v in cal.raw.items() if k not in ("name", "policy")}
        return Calibration({**fitted, "run": self.base["run"]}, kernel_speed(trace), ok)

    def run(self, every: bool) -> Iterator[dict[str, Any]]:
        cal = self.calibrate(1 if every else SERIAL_CHUNKS, verbose=True)
        first = serial_ms(cal.fitted)
        for label, policy, run in points(self.only):
            measured = replay(self.truth(policy, run), self.opts)
            after = self.calibrate(1) if every else cal
            fitted = blend(cal.fitted, after.fitted)
            row = self.compare(label, measured, policy, run, fitted)
            speeds = (cal.speed, after.speed)
            mean = statistics.fmean(speeds)
            row["cal_drift"] = serial_ms(fitted) / first - 1.0
            row["speed"] = kernel_speed(measured) / mean - 1.0
            row["steady"] = (abs(speeds[1] / speeds[0] - 1.0) <= STEADY
                             and abs(row["speed"]) <= STEADY)
            # the prediction re-timed at the speed the kernels ran during the point
            # (compute only; a diagnostic of the model with the machine's drift taken out)
            norm = row["after_ms"] / (1.0 + row["speed"])
            row["norm_err"] = abs(norm - row["meas_ms"]) / row["meas_ms"]
            row["ok"] = row["ok"] and cal.ok and after.ok
            cal = after
            yield row

    def truth(self, policy: dict[str, Any], run: dict[str, Any]) -> Any:
        return build_scenario({**self.base, "policy": policy,
                               "run": {**self.base["run"], **run}})

    def compare(self, label: str, measured: Any, policy: dict[str, Any],
                run: dict[str, Any], fitted: dict[str, Any]) -> dict[str, Any]:
        """The point's row: measured period against the prediction with the layout's
        devices (``after``) and without them (``before``)."""
        warmup = int(self.base["run"]["warmup"])
        after = build_scenario({**fitted, "policy": policy, "run": {**fitted["run"], **run}})
        before = build_scenario({k: v for k, v in fitted.items()
                                 if k not in ("placement", "devices")}
                                | {"policy": policy, "run": {**fitted["run"], **run}})
        meas = mean_period(measured, warmup)
        ovl = _overlap(measured)
        trust = measured.meta.get("parallelism", {})
        row = {"layout": self.layout, "ratio": self.ratio, "point": label,
               "meas_ms": meas, "ok": bool(trust.get("parallel", False)),
               "share": min((v for v in trust.get("device_share", {}).values()
                             if v is not None), default=float("nan"))}
        for tag, sc in (("after", after), ("before", before)):
            tr = simulate(sc)
            pred = mean_period(tr, warmup)
            row[f"{tag}_ms"] = pred
            row[f"{tag}_err"] = abs(pred - meas) / meas
            o = _overlap(tr)
            row[f"{tag}_ovl_err"] = (abs(o - ovl) if o is not None and ovl is not None
                                     else float("nan"))
        return row


def serial_ms(fitted: dict[str, Any]) -> float:
    """A calibration's serial chunk cost (sum of the fitted phase means, denoise steps
    counted): how fast the machine ran when it was fitted."""
    total = 0.0
    for cost in fitted["costs"].values():
        total += float(cost["mean"]) * int(cost.get("steps", 1))
    return total


def _line(row: dict[str, Any]) -> str:
    return (f"{row['layout']:8} {row['ratio']:8} {row['point']:26} {row['meas_ms']:8.2f} "
            f"{row['after_ms']:8.2f} {row['after_err']:6.1%} {row['after_ovl_err']:6.3f} "
            f"{row['before_ms']:8.2f} {row['before_err']:6.1%} {row['before_ovl_err']:6.3f} "
            f"{row['share']:5.2f} {row['cal_drift']:+6.1%} {row['speed']:+6.1%} "
            f"{'ok' if row['ok'] else 'WARN'} {'steady' if row['steady'] else '-'}")


def summarize(label: str, t: pd.DataFrame) -> None:
    print(f"{label} ({len(t)} points):")
    for tag in ("after", "before"):
        err, ovl = t[f"{tag}_err"], t[f"{tag}_ovl_err"]
        ok = (err.median() <= TARGET_MEDIAN and err.max() <= TARGET_MAX
              and ovl.max() <= TARGET_OVERLAP)
        print(f"  {tag:6}: period error median {err.median():.2%} max {err.max():.2%}; "
              f"OverlapScore error median {ovl.median():.3f} max {ovl.max():.3f}"
              + (f"  {'PASS' if ok else 'FAIL'} (median <= 2 %, max <= 5 %, ovl <= 0.05)"
                 if tag == "after" else ""))
        if tag == "after" and "norm_err" in t and t["norm_err"].notna().any():
            print(f"          at each point's kernel speed (diagnostic): period error "
                  f"median {t['norm_err'].median():.2%} max {t['norm_err'].max():.2%}")


def fixed_kernels(opts: ReplayOptions) -> ReplayOptions:
    """Measure the kernel speed once, then every replay runs the very same kernels (a
    re-measurement between the serial calibration and a point would change the truth)."""
    runtime = open_runtime(opts.device, ("stage0", "stage1"), opts.threads)
    try:
        cal, use = load_or_measure(runtime, opts.calibration_path, recalibrate=True)
    finally:
        runtime.close()
    print(f"# kernels: {cal.n}x{cal.n} matmul, {cal.iter_ms:.4f} ms/iter, measured "
          f"{use.measured_at} at load {use.load_at_measure}")
    print(f"# stability: {stability(opts, cal)}")
    return replace(opts, recheck_calibration=False)


def stability(opts: ReplayOptions, cal: Any, checks: int = 10) -> str:
    """The spread of ``checks`` back-to-back quick checks of the kernel, relative to its
    calibrated time."""
    runtime = open_runtime(opts.device, ("stage0", "stage1"), opts.threads)
    try:
        ratios = [in_stage_thread(runtime, lambda: quick_check(runtime, cal)) / cal.iter_ms
                  for _ in range(checks)]
    finally:
        runtime.close()
    return (f"{checks} back-to-back kernel checks read {min(ratios):.3f}..{max(ratios):.3f} "
            f"of the calibrated time (median {statistics.median(ratios):.3f})")


def main_oos(chunks: int, scale: float, opts: ReplayOptions, only: str | None = None,
             every: bool = True, sel: Selection | None = None) -> pd.DataFrame:
    """Every layout (``only``: that one) x ratio x point of ``sel``, printed as it runs;
    the table of all points."""
    sel = sel or Selection()
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    opts = fixed_kernels(opts)
    print(f"{'layout':8} {'ratio':8} {'point':26} {'meas ms':>8} {'after':>8} {'err':>6} "
          f"{'ovl e':>6} {'before':>8} {'err':>6} {'ovl e':>6} {'share':>5} {'drift':>6} "
          f"{'speed':>6} trust")
    for layout in layouts(opts.device, sel.cores):
        if only and layout != only:
            continue
        for ratio in sel.ratios or tuple(RATIOS):
            grid = Grid(layout, ratio, chunks, scale, opts, sel.cores, sel.points)
            for row in grid.run(every):
                rows.append(row)
                print(_line(row), flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{len(table)} points in {time.perf_counter() - t0:.0f} s")
    for layout, part in table.groupby("layout", sort=False):
        summarize(f"{layout}", part)
        trusted = part[part["ok"]]
        if 0 < len(trusted) < len(part):
            summarize(f"{layout}, replays without a parallelism warning", trusted)
        steady = part[part["steady"]]
        if 0 < len(steady) < len(part):
            summarize(f"{layout}, steady points (kernel speed within {STEADY:.0%} of "
                      "both calibrations)", steady)
    shares = table["share"].dropna()
    if len(shares):
        print(f"device CPU share during replays: median {statistics.median(shares):.2f}, "
              f"min {shares.min():.2f}")
    return table
