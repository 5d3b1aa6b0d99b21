"""Probe a device's contention rates directly with the replay's calibrated kernels.

For ``n`` = 1, 2, ... ``levels``: ``n`` threads set up like replay stages on the device
(pinned to its cores on the CPU, a stream each on CUDA) each run the same calibrated
matmul loop of about ``work_ms`` solo milliseconds at once. ``rate_n`` = solo wall time
/ the mean wall time of the ``n`` concurrent loops (the speed of each, as a fraction of
solo speed; 1/n is pure time-sharing). Each level is the median over ``repeats`` rounds
of a solo loop and, right after it, the concurrent ones (so slow drift in the machine's
load cancels in each ratio).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pipefill.exec.kernels.calibrated import Calibration, load_or_measure
from pipefill.exec.threads.runtime import Runtime, open_runtime


class ProbeError(RuntimeError):
    """A probe loop did not finish."""


@dataclass(frozen=True)
class ProbeResult:
    """``rates``: n -> probed rate; ``samples``: rounds per level; ``solo_ms``: the solo
    wall time of one loop; ``device``: the runtime's description."""

    rates: dict[int, float]
    samples: int
    solo_ms: float
    device: str

    def describe(self, name: str) -> str:
        rates = ", ".join(f"rate[{n}] = {r:.3f}" for n, r in self.rates.items())
        return (f"device {name}: {rates} (probed: {self.samples} rounds per level of "
                f"{self.solo_ms:.0f} ms solo loops on {self.device})")


def _loop(runtime: Runtime, stage: str, cal: Calibration, iters: int, start: threading.Barrier,
          out: list[float]) -> None:
    with runtime.stage_context(stage):
        a = torch.randn(cal.n, cal.n, device=runtime.device).to(getattr(torch, cal.dtype))
        res = torch.empty_like(a)
        torch.mm(a, a, out=res)
        start.wait(60.0)
        t = time.perf_counter()
        for _ in range(iters):
            torch.mm(a, a, out=res)
        if runtime.kind == "cuda":
            torch.cuda.current_stream(runtime.device).synchronize()
        out.append((time.perf_counter() - t) * 1e3)


def _round(runtime: Runtime, cal: Calibration, n: int, iters: int) -> float:
    """Mean wall ms of ``n`` concurrent loops of ``iters`` iterations."""
    stages = runtime.stages[:n]
    start = threading.Barrier(n)
    out: list[float] = []
    threads = [threading.Thread(target=_loop, args=(runtime, s, cal, iters, start, out),
                                daemon=True, name="pipefill-probe") for s in stages]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120.0)
    if len(out) != n:
        raise ProbeError(f"contention probe: {n - len(out)} of {n} loops did not finish")
    return statistics.fmean(out)


def probe_contention(device: str, cores: tuple[int, ...] | None, levels: int,
                     calibration_path: Path | None = None, work_ms: float = 80.0,
                     repeats: int = 5) -> ProbeResult:
    """Rates for 2..``levels`` concurrent computes on one device (CPU: on ``cores``)."""
    stages = tuple(f"probe{i}" for i in range(levels))
    pins = dict.fromkeys(stages, cores) if cores else {}
    runtime = open_runtime(device, stages, 1, pins)
    try:
        cal, _ = load_or_measure(runtime, calibration_path)
        iters = cal.iterations(work_ms)
        solos, rates = [], {}
        for n in range(2, levels + 1):
            ratios = []
            for _ in range(repeats):  # solo and concurrent back to back: drift cancels
                solos.append(_round(runtime, cal, 1, iters))
                ratios.append(solos[-1] / _round(runtime, cal, n, iters))
            rates[n] = round(statistics.median(ratios), 4)
        return ProbeResult(rates, repeats, statistics.median(solos), runtime.describe())
    finally:
        runtime.close()
