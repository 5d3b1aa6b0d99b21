"""Calibrated kernels: a matmul loop sized to take a phase's modelled duration.

A calibration measures, once per device setting, how long one iteration (an n x n
matmul, n chosen so an iteration takes about ``TARGET_ITER_MS``) takes, and caches it
as JSON (never pickle) keyed by the runtime's :meth:`calibration_key`. A phase whose
cost-table duration is d then runs ``round(d / iter_ms)`` iterations, so replaying a
simulated scenario differs from the simulation only by scheduling effects.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from pipefill.exec.errors import Aborted
from pipefill.exec.threads.runtime import Runtime
from pipefill.sim.actions import Compute
from pipefill.sim.costs import CostTable
from pipefill.traces.io import write_text

#: one workload iteration should take about this long (ms): small enough for a few-ms
#: phase to be sized within a few percent, large enough that Python overhead is noise
TARGET_ITER_MS = 0.25
CACHE_VERSION = 1
#: iterations between two looks at the cancel flag
CANCEL_EVERY = 8


def default_cache_path() -> Path:
    base = os.environ.get("PIPEFILL_CACHE_DIR") or Path.home() / ".cache" / "pipefill"
    return Path(base) / "calibration.json"


@dataclass(frozen=True)
class Calibration:
    """``iter_ms``: measured time of one ``n`` x ``n`` matmul in ``dtype`` for ``key``."""

    key: str
    n: int
    iter_ms: float
    dtype: str

    def iterations(self, duration_ms: float) -> int:
        return max(0, round(duration_ms / self.iter_ms))


def _dtype(runtime: Runtime) -> torch.dtype:
    return torch.float32 if runtime.kind == "cpu" else torch.bfloat16


def _time_iters(runtime: Runtime, n: int, iters: int) -> float:
    """ms per matmul iteration of size n, median of 5 batches (setup time, not steady)."""
    gen = torch.Generator(device=runtime.device).manual_seed(0)
    a = torch.randn(n, n, generator=gen, device=runtime.device).to(_dtype(runtime))
    out = torch.empty_like(a)
    samples = []
    for _ in range(6):
        if runtime.kind == "cuda":
            torch.cuda.synchronize(runtime.device)
        t = time.perf_counter()
        for _ in range(iters):
            torch.mm(a, a, out=out)
        if runtime.kind == "cuda":
            torch.cuda.synchronize(runtime.device)
        samples.append((time.perf_counter() - t) * 1e3 / iters)
    return statistics.median(samples[1:])


def measure(runtime: Runtime) -> Calibration:
    """Pick n so one iteration takes about TARGET_ITER_MS, then time it."""
    n = 128 if runtime.kind == "cpu" else 2048
    t = _time_iters(runtime, n, 8)
    n = int(min(16384, max(32, round(n * (TARGET_ITER_MS / t) ** (1 / 3) / 16) * 16)))
    iters = max(8, int(40 / TARGET_ITER_MS))  # about 40 ms per batch
    return Calibration(runtime.calibration_key(), n, _time_iters(runtime, n, iters),
                       str(_dtype(runtime)).removeprefix("torch."))


def _load(path: Path) -> dict[str, Any]:
    """Cache entries; an unreadable or foreign file counts as empty (it is re-measured)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _from_entry(key: str, entry: Any) -> Calibration | None:
    try:
        cal = Calibration(key, int(entry["n"]), float(entry["iter_ms"]), str(entry["dtype"]))
    except (KeyError, TypeError, ValueError):
        return None
    return cal if cal.iter_ms > 0 and cal.n > 0 else None


def in_stage_thread(runtime: Runtime, fn: Callable[[], Any], stage: str | None = None) -> Any:
    """Run ``fn`` in a fresh thread set up like ``stage`` (its thread count, its CUDA
    stream, inference mode); the first stage when None."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            with runtime.stage_context(stage or runtime.stages[0]):
                box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=body, name="pipefill-calibrate", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def load_or_measure(runtime: Runtime, path: Path | None = None,
                    workload: str = "matmul",
                    measure_fn: Callable[[Runtime], Calibration] | None = None,
                    ) -> tuple[Calibration, bool]:
    """The cached calibration of ``workload`` for this runtime, measuring (and caching)
    it if missing. Returns the calibration and whether it came from the cache.
    """
    path = path or default_cache_path()
    entries = _load(path)
    key = runtime.calibration_key() + ("" if workload == "matmul" else f"|{workload}")
    cached = _from_entry(key, entries.get(key))
    if cached is not None:
        return cached, True
    fn = measure_fn or measure  # looked up per call: tests replace the measurement
    cal: Calibration = in_stage_thread(runtime, lambda: fn(runtime))
    entries[key] = {k: v for k, v in asdict(cal).items() if k != "key"}
    entries[key]["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_text(path, json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1))
    return cal, False


class CalibratedKernels:
    """Every phase runs ``cal.iterations(costs.duration(action))`` matmuls; output None.

    Each stage owns its operands, so no buffer is shared across stages (or streams).
    The loop stops with :class:`Aborted` soon after ``cancel`` is set (a failed run
    does not wait for, or abandon, a long calibrated phase).
    """

    def __init__(self, costs: CostTable, cal: Calibration, runtime: Runtime, seed: int,
                 cancel: threading.Event | None = None) -> None:
        gen = torch.Generator(device=runtime.device).manual_seed(seed)
        a = torch.randn(cal.n, cal.n, generator=gen, device=runtime.device)
        self.a = a.to(getattr(torch, cal.dtype))
        self.out = torch.empty_like(self.a)
        self.costs, self.cal = costs, cal
        self.cancel = cancel or threading.Event()

    def warm_up(self) -> None:
        """A few iterations before time zero (first calls allocate)."""
        for _ in range(CANCEL_EVERY):
            torch.mm(self.a, self.a, out=self.out)

    def run(self, action: Compute) -> Any:
        for i in range(self.cal.iterations(self.costs.duration(action))):
            if i % CANCEL_EVERY == 0 and self.cancel.is_set():
                raise Aborted
            torch.mm(self.a, self.a, out=self.out)
        return None
