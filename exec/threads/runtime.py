"""Device runtimes: clocks, span timing, per-stage thread setup and cross-stage handoff.

:data:`DEVICES` maps ``--device`` to a runtime class. A runtime is opened once per
run (validation there: ``cuda`` without CUDA is an :class:`ExecConfigError`), then
each worker thread enters :meth:`stage_context` for its stage.

CPU: each stage sets its own intra-op thread count and, when the scenario names devices,
pins its thread to its device's cores (:mod:`pipefill.exec.threads.placement`); spans are
timed with a monotonic clock.

CUDA: each stage has its own stream; spans are timed with CUDA events against
a reference event recorded at run start; a tensor crossing stages is handed over with
a ready event the consumer's stream waits on, plus ``record_stream`` so the caching
allocator does not recycle it under the consumer. A compute waits on *its own* end
event, never on the device, so queue slots are freed when the work is done (the
semantics the model assumes) and no device-wide synchronize happens in steady state.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any, ClassVar

import torch

from pipefill.exec.errors import ExecConfigError
from pipefill.exec.threads.placement import pin_current_thread


def tensors_of(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside a payload (tensors, dataclasses, dicts, lists, Messages)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif is_dataclass(obj) and not isinstance(obj, type):
        for f in fields(obj):
            yield from tensors_of(getattr(obj, f.name))
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors_of(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from tensors_of(v)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class CpuRuntime:
    """Stages are threads on the host; each sets its own intra-op thread count."""

    kind: ClassVar[str] = "cpu"
    model_dtype: ClassVar[torch.dtype] = torch.float32

    def __init__(self, stages: tuple[str, ...], threads: int,
                 pins: dict[str, tuple[int, ...]] | None = None) -> None:
        self.stages, self.threads = stages, threads
        self.pins = dict(pins or {})
        self.device = torch.device("cpu")
        self._t0 = time.perf_counter()
        self._saved_threads = torch.get_num_threads()

    def describe(self) -> str:
        pinned = "; pinned " + ", ".join(f"{s}->cores {list(c)}" for s, c in self.pins.items()) \
            if self.pins else ""
        return f"cpu: {cpu_name()}, {self.threads} intra-op thread(s) per stage{pinned}"

    def calibration_key(self) -> str:
        return f"cpu|{cpu_name()}|threads={self.threads}|torch={torch.__version__}"

    def start(self) -> None:
        """Time zero of the trace (after setup)."""
        self._t0 = time.perf_counter()

    def close(self) -> None:
        torch.set_num_threads(self._saved_threads)

    def now_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1e3

    @contextlib.contextmanager
    def stage_context(self, stage: str) -> Iterator[None]:
        # ATen sizes a thread's OpenMP pool lazily from a process-wide value: force that
        # first, so the setting below is this thread's own and not a race with others
        torch.get_num_threads()
        if stage in self.pins:  # before the pool exists: its threads inherit the mask
            pin_current_thread(self.pins[stage])
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            yield

    def begin(self, stage: str) -> Any:
        return self.now_ms()

    def end(self, stage: str, token: Any) -> tuple[float, float]:
        return float(token), self.now_ms()

    def send(self, stage: str, payload: Any) -> Any:
        return None

    def receive(self, stage: str, payload: Any, ready: Any) -> None:
        return None


class CudaRuntime:
    """One stream per stage on one GPU; CUDA events time spans and order handoffs."""

    kind: ClassVar[str] = "cuda"
    model_dtype: ClassVar[torch.dtype] = torch.bfloat16

    def __init__(self, stages: tuple[str, ...], threads: int,
                 pins: dict[str, tuple[int, ...]] | None = None) -> None:
        if not torch.cuda.is_available():
            raise ExecConfigError("--device", f"cuda requested but torch {torch.__version__} "
                                  "sees no CUDA device (allowed here: cpu)")
        self.stages, self.threads = stages, threads
        self.device = torch.device("cuda", torch.cuda.current_device())
        self.streams = {s: torch.cuda.Stream(self.device) for s in stages}
        self._ref = torch.cuda.Event(enable_timing=True)
        self._t0 = time.perf_counter()

    def describe(self) -> str:
        return f"cuda: {torch.cuda.get_device_name(self.device)}, one stream per stage"

    def calibration_key(self) -> str:
        return (f"cuda|{torch.cuda.get_device_name(self.device)}|torch={torch.__version__}"
                f"|cuda={torch.version.cuda}")

    def start(self) -> None:
        # setup only: align the event clock with the host clock once, before any work
        torch.cuda.synchronize(self.device)
        self._ref.record(torch.cuda.current_stream(self.device))
        self._ref.synchronize()
        self._t0 = time.perf_counter()

    def close(self) -> None:
        return None

    def now_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1e3

    @contextlib.contextmanager
    def stage_context(self, stage: str) -> Iterator[None]:
        torch.cuda.set_device(self.device)
        with torch.cuda.stream(self.streams[stage]), torch.inference_mode():
            yield

    def begin(self, stage: str) -> Any:
        ev = torch.cuda.Event(enable_timing=True)
        ev.record(self.streams[stage])
        return ev

    def end(self, stage: str, token: Any) -> tuple[float, float]:
        done = torch.cuda.Event(enable_timing=True)
        done.record(self.streams[stage])
        done.synchronize()  # this stage's work only: the slot semantics need "finished"
        return self._ref.elapsed_time(token), self._ref.elapsed_time(done)

    def send(self, stage: str, payload: Any) -> Any:
        ready = torch.cuda.Event()
        ready.record(self.streams[stage])
        return ready

    def receive(self, stage: str, payload: Any, ready: Any) -> None:
        stream = self.streams[stage]
        if ready is not None:
            stream.wait_event(ready)
        for t in tensors_of(payload):
            if t.is_cuda:
                t.record_stream(stream)


Runtime = CpuRuntime | CudaRuntime

#: ``--device`` -> runtime class
DEVICES: dict[str, type[CpuRuntime] | type[CudaRuntime]] = {"cpu": CpuRuntime,
                                                            "cuda": CudaRuntime}


def open_runtime(device: str, stages: tuple[str, ...], threads: int,
                 pins: dict[str, tuple[int, ...]] | None = None) -> Runtime:
    """``pins``: stage -> CPU cores its thread runs on (CPU only; CUDA ignores it)."""
    cls = DEVICES.get(device)
    if cls is None:
        raise ExecConfigError("--device", f"unknown device {device!r} "
                              f"(allowed: {', '.join(DEVICES)})")
    return cls(stages, threads, pins)
