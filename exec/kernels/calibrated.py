"""Calibrated kernels: a matmul loop sized to take a phase's modelled duration.

A calibration measures, once per device setting, how long one iteration (an n x n
matmul, n chosen so an iteration takes about ``TARGET_ITER_MS``) takes, and caches it
as JSON (never pickle) keyed by the runtime's :meth:`calibration_key`. A phase whose
cost-table duration is d then runs ``round(d / iter_ms)`` iterations, so replaying a
simulated scenario differs from the simulation only by scheduling effects.

The cache records when and under what load (load average, free cores) each entry was
measured. A cached entry is trusted only after a quick check (a few short batches, about
30 ms) agrees with it within ``QUICK_TOLERANCE``; otherwise, or when asked to
(``--recalibrate``), it is measured again. :class:`CacheUse` says which happened.
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
from pipefill.sim.program.actions import Compute
from pipefill.sim.scenario.costs import CostTable
from pipefill.traces.io import write_text

#: one workload iteration should take about this long (ms): small enough for a few-ms
#: phase to be sized within a few percent, large enough that Python overhead is noise
TARGET_ITER_MS = 0.25
CACHE_VERSION = 1
#: iterations between two looks at the cancel flag
CANCEL_EVERY = 8
#: a cached speed is re-measured when a quick check disagrees by more than this
QUICK_TOLERANCE = 0.05
#: ms per batch of the quick check (median of 3)
QUICK_BATCH_MS = 10.0


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


def _time_iters(runtime: Runtime, n: int, iters: int, batches: int = 6) -> float:
    """ms per matmul iteration of size n: the median of ``batches`` - 1 timed batches (the
    first is left out: setup time, not steady)."""
    gen = torch.Generator(device=runtime.device).manual_seed(0)
    a = torch.randn(n, n, generator=gen, device=runtime.device).to(_dtype(runtime))
    out = torch.empty_like(a)
    samples = []
    for _ in range(batches):
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


@dataclass(frozen=True)
class CacheUse:
    """Which calibration a run used and why.

    ``source``: ``cache`` (the quick check agreed), ``measured`` (no usable entry),
    ``remeasured`` (the quick check disagreed by more than QUICK_TOLERANCE) or
    ``recalibrated`` (forced); ``measured_at`` and ``load_at_measure`` describe the entry
    in use; ``cached_ms`` / ``quick_ms``: the cached speed and the quick check's, if any.
    """

    source: str
    measured_at: str
    load_at_measure: dict[str, Any]
    cached_ms: float | None = None
    quick_ms: float | None = None

    @property
    def cached(self) -> bool:
        return self.source == "cache"

    def describe(self) -> str:
        check = (f", quick check {self.quick_ms:.4g} vs cached {self.cached_ms:.4g} ms"
                 if self.quick_ms is not None and self.cached_ms is not None else "")
        return f"{self.source} (measured {self.measured_at}{check})"


def load_now() -> dict[str, Any]:
    """The machine's load right now: 1-minute load average and cores this process has."""
    try:
        avg = round(os.getloadavg()[0], 2)
    except OSError:
        avg = None
    getter = getattr(os, "sched_getaffinity", None)
    cores = len(getter(0)) if getter is not None else os.cpu_count()
    return {"loadavg_1m": avg, "cores": cores}


def quick_check(runtime: Runtime, cal: Calibration) -> float:
    """ms per iteration of ``cal``'s workload now: median of 3 short batches."""
    return _time_iters(runtime, cal.n, max(4, round(QUICK_BATCH_MS / cal.iter_ms)), batches=4)


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
                    recalibrate: bool = False,
                    check_fn: Callable[[Runtime, Calibration], float] | None = None,
                    recheck: bool = True) -> tuple[Calibration, CacheUse]:
    """The calibration of ``workload`` for this runtime and how it was obtained.

    A cached entry is used when a quick check (``check_fn``, default :func:`quick_check`)
    agrees with it within QUICK_TOLERANCE (or as is when not ``recheck``: a series of
    replays that must run the same workload); otherwise, when missing or when
    ``recalibrate``, it is measured (``measure_fn``) and cached with its time and load.
    """
    path = path or default_cache_path()
    entries = _load(path)
    key = runtime.calibration_key() + ("" if workload == "matmul" else f"|{workload}")
    entry = entries.get(key) or {}
    cached = _from_entry(key, entry)
    source, quick = "measured", None
    if cached is not None and recalibrate:
        source = "recalibrated"
    elif cached is not None and not recheck:
        return cached, CacheUse("cache", str(entry.get("measured_at", "?")),
                                dict(entry.get("load") or {}), cached.iter_ms, None)
    elif cached is not None:
        check = check_fn or quick_check
        quick = float(in_stage_thread(runtime, lambda: check(runtime, cached)))
        if abs(quick - cached.iter_ms) <= QUICK_TOLERANCE * cached.iter_ms:
            return cached, CacheUse("cache", str(entry.get("measured_at", "?")),
                                    dict(entry.get("load") or {}), cached.iter_ms, quick)
        source = "remeasured"
    fn = measure_fn or measure  # looked up per call: tests replace the measurement
    load = load_now()
    cal: Calibration = in_stage_thread(runtime, lambda: fn(runtime))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    entries[key] = {k: v for k, v in asdict(cal).items() if k != "key"}
    entries[key].update(measured_at=stamp, load=load)
    write_text(path, json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1))
    return cal, CacheUse(source, stamp, load,
                         cached.iter_ms if cached is not None else None, quick)


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
        #: iterations run so far (time zero on): their calibrated ms is the solo work done
        self.done = 0

    @property
    def work_ms(self) -> float:
        """The calibrated (solo) milliseconds of the iterations run so far."""
        return self.done * self.cal.iter_ms

    def warm_up(self) -> None:
        """A few iterations before time zero (first calls allocate)."""
        for _ in range(CANCEL_EVERY):
            torch.mm(self.a, self.a, out=self.out)

    def run(self, action: Compute) -> Any:
        for i in range(self.cal.iterations(self.costs.duration(action))):
            if i % CANCEL_EVERY == 0 and self.cancel.is_set():
                raise Aborted
            torch.mm(self.a, self.a, out=self.out)
            self.done += 1
        return None
