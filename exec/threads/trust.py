"""Can a measurement be trusted? The parallelism a replay actually had.

Three measurements, all cheap:

- per stage, the CPU time its thread spent inside kernels over the wall time of its
  compute spans (``cpu_share``): about 1 for a stage that had a core to itself, about
  0.5 for one that time-shared a core with another process or stage; and per device,
  the CPU time of all its stages over the time any of them computed (``device_share``):
  about 1 for a device that got a core's worth (stages sharing a core included);
- per stage, the calibrated kernels' speed: the calibrated milliseconds of the
  iterations they ran over the CPU time they took (``kernel_speed``): about 1 when the
  core ran as fast as when it was calibrated, less when its hardware is shared with
  other work (an SMT sibling, a noisy neighbour on a VM) or its clock dropped, which a
  CPU-time share cannot see;
- around the run (before and after), how many of ``k`` single-threaded matmul loops run
  in parallel right now (``free_cores``; ``k`` = the devices the stages run on): k on an
  idle machine, less when another process holds a core.

A device with a low share, a kernel speed below MIN_SPEED or fewer free cores than
devices means the stages could not run as the scenario assumes: the replay says so in
its summary, JSON and trace metadata (``parallelism.warnings``). Stages placed on one
device are expected to share it: only their device's share is checked. CUDA stages
wait on events, so their thread CPU time says nothing: only the free cores are kept.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

#: a stage whose thread got less than this share of a core while computing was starved
MIN_SHARE = 0.85
#: calibrated kernels running slower than this fraction of their calibrated speed
MIN_SPEED = 0.9
#: fewer free cores than this fraction of the devices needed means no full parallelism
MIN_FREE = 0.9
#: matmul size and iterations of one probe loop (about 10 ms on a 2020s core)
PROBE_N, PROBE_ITERS = 128, 60


@dataclass
class StageUsage:
    """CPU time (ms) a stage's thread spent in compute spans, and the spans (thread-safe)."""

    cpu_ms: dict[str, float] = field(default_factory=dict)
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: time (ms) inside a stage's spans spent waiting for peers (a dist rank's collectives)
    wait_ms: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, stage: str, cpu_ms: float, start: float, end: float) -> None:
        with self._lock:
            self.cpu_ms[stage] = self.cpu_ms.get(stage, 0.0) + cpu_ms
            self.spans.setdefault(stage, []).append((start, end))

    def of(self, stage: str) -> tuple[float, list[tuple[float, float]]]:
        """``stage``'s CPU time (ms) and compute spans so far."""
        with self._lock:
            return self.cpu_ms.get(stage, 0.0), list(self.spans.get(stage, []))

    def absorb(self, stage: str, cpu_ms: float, spans: list[tuple[float, float]],
               wait_ms: float = 0.0) -> None:
        """Add another process's totals for ``stage`` (a dist rank's, read by rank0);
        ``wait_ms``: time inside those spans it waited for its peers, not computed."""
        with self._lock:
            self.cpu_ms[stage] = self.cpu_ms.get(stage, 0.0) + cpu_ms
            self.spans.setdefault(stage, []).extend(spans)
            self.wait_ms[stage] = self.wait_ms.get(stage, 0.0) + wait_ms

    def wall(self, stages: tuple[str, ...]) -> float:
        """Time (ms) at least one of ``stages`` computed: the union of their spans."""
        with self._lock:
            spans = sorted(iv for s in stages for iv in self.spans.get(s, []))
        wall, reach = 0.0, float("-inf")
        for start, end in spans:
            if end > reach:
                wall += end - max(start, reach)
                reach = end
        return wall

    def share(self, stages: tuple[str, ...]) -> float | None:
        """CPU time of ``stages`` over the time at least one of them computed (their
        spans' union less the time they waited for peers inside them)."""
        with self._lock:
            cpu = sum(self.cpu_ms.get(s, 0.0) for s in stages)
            waited = sum(self.wait_ms.get(s, 0.0) for s in stages)
        wall = self.wall(stages) - waited
        return round(cpu / wall, 4) if wall > 0 else None


def _probe_loop(out: list[float], n: int = PROBE_N, iters: int = PROBE_ITERS) -> None:
    torch.get_num_threads()  # the setting below is this thread's own (see runtime.py)
    torch.set_num_threads(1)
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    for _ in range(iters):
        torch.mm(a, a)
    out.append(time.perf_counter() - t)


def free_cores(k: int, n: int = PROBE_N, iters: int = PROBE_ITERS) -> float:
    """How many of ``k`` single-threaded ``n`` x ``n`` matmul loops of ``iters``
    iterations run in parallel now (k when idle; longer loops read steadier)."""
    if k < 2:
        return float(k)
    one: list[float] = []
    _probe_loop(one, n, iters)  # warm-up
    one.clear()
    _probe_loop(one, n, iters)
    many: list[float] = []
    threads = [threading.Thread(target=_probe_loop, args=(many, n, iters),
                                name="pipefill-probe") for _ in range(k)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30.0)
    return round(min(float(k), k * one[0] / max(many)), 3) if len(many) == k else 0.0


def kernel_work_ms(kernels: Any) -> float | None:
    """Calibrated ms of kernel work a stage's kernels ran (calibrated kernels; looks
    through wrappers such as fault injection or a mesh sync), None for other families."""
    k = kernels
    while k is not None and not hasattr(k, "work_ms"):
        k = getattr(k, "inner", None)
    return None if k is None else float(k.work_ms)


def kernel_speed(usage: StageUsage, work_ms: dict[str, float]) -> dict[str, float]:
    """Per stage: calibrated ms of work done per ms of CPU time (stages with work only)."""
    with usage._lock:
        cpu = dict(usage.cpu_ms)
    return {s: round(w / cpu[s], 4) for s, w in sorted(work_ms.items())
            if w > 0 and cpu.get(s, 0.0) > 0}


def parallelism(kind: str, groups: dict[str, tuple[str, ...]], usage: StageUsage,
                free: tuple[float | None, float | None],
                work_ms: dict[str, float] | None = None) -> dict[str, Any]:
    """The ``parallelism`` record of a replay: shares, kernel speed, free cores and
    warnings. ``work_ms``: calibrated ms of the kernel iterations each stage ran."""
    need = len(groups)
    stages = sorted(s for group in groups.values() for s in group)
    cpu = kind == "cpu"
    shares = {s: usage.share((s,)) for s in stages} if cpu else {}
    devices = {d: usage.share(group) for d, group in groups.items()} if cpu else {}
    warnings: list[str] = []
    for dev, share in devices.items():
        if share is not None and share < MIN_SHARE:
            who = dev if groups[dev] == (dev,) else f"device {dev} ({', '.join(groups[dev])})"
            warnings.append(f"{who} got {share:.0%} of a core while computing: the machine "
                            "is loaded, the stages could not run as modelled and the "
                            "measured period is too long")
    speed = kernel_speed(usage, work_ms or {}) if cpu else {}
    for stage, value in speed.items():
        if value < MIN_SPEED:
            warnings.append(f"{stage}'s kernels ran at {value:.0%} of their calibrated speed "
                            "per CPU second: the core is shared with other work at the "
                            "hardware level (or its clock dropped); the period is too long")
    measured = [f for f in free if f is not None]
    if need >= 2 and measured and min(measured) < MIN_FREE * need:
        warnings.append(f"only {min(measured):.2f} of {need} cores were free around the run: "
                        "the stages could not run in parallel")
    return {"devices_needed": need, "cpu_share": shares, "device_share": devices,
            "kernel_speed": speed,
            "free_cores_before": free[0], "free_cores_after": free[1],
            "parallel": not warnings, "warnings": warnings}
