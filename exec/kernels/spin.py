"""Spin kernels (CUDA only): each phase is a clock-spinning kernel of calibrated length.

Matmul-sized calibrated kernels saturate the GPU, so when two stages share one GPU their
phases slow each other down (about 2x on an H200 for the default scenario). A spin
kernel (``torch.cuda._sleep``) occupies one block on one SM for a given number of clock
cycles: stages on separate streams overlap without contending, and a replay differs
from the simulation only by scheduling effects (dispatch, streams, events, queues).
The calibration (ms per ``n`` cycles) is cached like the matmul one, keyed ``...|spin``.
"""

from __future__ import annotations

import statistics
import threading
from typing import Any

import torch

from pipefill.exec.errors import Aborted
from pipefill.exec.kernels.calibrated import Calibration
from pipefill.exec.threads.runtime import Runtime
from pipefill.sim.program.actions import Compute
from pipefill.sim.scenario.costs import CostTable

#: cycles per calibration launch (about 5 ms at H100/H200 clocks)
CAL_CYCLES = 10_000_000
#: the longest single launch (ms), so a cancelled run stops enqueueing soon
PIECE_MS = 5.0


def measure_spin(runtime: Runtime) -> Calibration:
    """Time spin launches of CAL_CYCLES with CUDA events; median of 7 after a warm-up."""
    stream = torch.cuda.current_stream(runtime.device)
    samples = []
    for i in range(8):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        torch.cuda._sleep(CAL_CYCLES)
        end.record(stream)
        end.synchronize()
        if i:
            samples.append(start.elapsed_time(end))
    return Calibration(runtime.calibration_key() + "|spin", CAL_CYCLES,
                       statistics.median(samples), "spin")


class SpinKernels:
    """Every phase spins for ``costs.duration(action)`` ms on this stage's stream; output None.

    Invariant: a phase is enqueued as pieces of at most PIECE_MS, and no piece is
    enqueued once ``cancel`` is set.
    """

    def __init__(self, costs: CostTable, cal: Calibration,
                 cancel: threading.Event | None = None) -> None:
        self.costs = costs
        self.cycles_per_ms = cal.n / cal.iter_ms
        self.cancel = cancel or threading.Event()

    def warm_up(self) -> None:
        torch.cuda._sleep(1000)

    def run(self, action: Compute) -> Any:
        remaining = self.costs.duration(action) * self.cycles_per_ms
        piece = PIECE_MS * self.cycles_per_ms
        while remaining >= 1:
            if self.cancel.is_set():
                raise Aborted
            cycles = int(min(remaining, piece))
            torch.cuda._sleep(cycles)
            remaining -= cycles
        return None
