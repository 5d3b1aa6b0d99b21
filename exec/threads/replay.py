"""Replay a scenario's policy on real torch work: the threads executor's entry point.

``replay(scenario, options)`` runs ``scenario.policy.programs(scenario)`` (the very
programs the SimPy engine runs) with one worker thread per program, real bounded
queues, comm lanes and the chosen kernel family, and returns the measured trace in
the simulator's format. A failure raises :class:`ExecError` carrying the partial trace.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipefill.exec.errors import ExecConfigError, ExecError
from pipefill.exec.kernels.registry import Fault, FaultyKernels, Kernels, KernelSetup, make_family
from pipefill.exec.lifecycle import exec_meta, stall_line, warm_up
from pipefill.exec.threads.backend import Progress, RunContext, drive
from pipefill.exec.threads.comm_lane import CommLane, feed_inputs, source_stages
from pipefill.exec.threads.placement import cpu_pins
from pipefill.exec.threads.runtime import Runtime, open_runtime
from pipefill.exec.threads.state import SharedState
from pipefill.exec.threads.trust import free_cores, kernel_work_ms, parallelism
from pipefill.sim.scenario.costs import CostTable
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.recorder import Recorder
from pipefill.traces.schema import Trace

#: how the comm lanes move messages: ``modelled`` waits the scenario's transport time
#: (replays the cost model's links), ``handoff`` delivers at once (real in-process cost)
TRANSPORTS = ("auto", "modelled", "handoff")


@dataclass(frozen=True)
class ReplayOptions:
    """How to run a replay.

    ``device``: ``cpu`` or ``cuda``; ``kernels``: ``calibrated`` or ``model``;
    ``threads``: intra-op threads per stage (CPU); ``model_size``: for model kernels;
    ``calibration_path``: the JSON calibration cache (default under ~/.cache/pipefill);
    ``timeout_s``: the longest any wait or kernel may take before the run fails;
    ``transport``: ``auto`` = modelled for calibrated kernels, handoff for model ones;
    ``fault``: make one kernel call raise (tests, ``--inject``);
    ``recalibrate``: re-measure the kernel-speed calibration even if the cache agrees;
    ``probe_load``: measure the free cores before and after the run (CPU);
    ``recheck_calibration``: quick-check a cached kernel calibration (off: use it as is,
    so a series of replays runs the very same kernels).
    """

    device: str = "cpu"
    kernels: str = "calibrated"
    threads: int = 1
    model_size: str = "small"
    calibration_path: Path | None = None
    timeout_s: float = 60.0
    transport: Literal["auto", "modelled", "handoff"] = "auto"
    fault: Fault | None = None
    recalibrate: bool = False
    probe_load: bool = True
    recheck_calibration: bool = True

    def check(self) -> None:
        if self.threads < 1:
            raise ExecConfigError("--threads", f"must be >= 1 (got {self.threads})")
        if not self.timeout_s > 0:
            raise ExecConfigError("--timeout", f"must be > 0 seconds (got {self.timeout_s})")
        if self.transport not in TRANSPORTS:
            raise ExecConfigError("transport", f"unknown mode {self.transport!r} "
                                  f"(allowed: {', '.join(TRANSPORTS)})")

    @property
    def modelled_transport(self) -> bool:
        return self.transport == "modelled" or (self.transport == "auto"
                                                and self.kernels == "calibrated")


def replay(sc: Scenario, options: ReplayOptions | None = None,
           progress: Progress | None = None) -> Trace:
    """Run ``sc`` for real and return its measured trace (raises ExecError on failure)."""
    opts = options or ReplayOptions()
    opts.check()
    pins = cpu_pins(sc) if opts.device == "cpu" else {}
    runtime = open_runtime(opts.device, sc.policy.stages(sc), opts.threads, pins)
    try:
        return _Replay(sc, opts, runtime, progress).execute()
    finally:
        runtime.close()


def worker_names(stages: list[str]) -> list[str]:
    """Worker ids: the stage name, or ``stage#i`` when a stage runs several programs."""
    return [s if stages.count(s) == 1 else f"{s}#{stages[:i].count(s)}"
            for i, s in enumerate(stages)]


class _Replay:
    """One run: setup, threads, watchdog, trace. Not reusable."""

    def __init__(self, sc: Scenario, opts: ReplayOptions, runtime: Runtime,
                 progress: Progress | None) -> None:
        self.sc, self.opts, self.runtime = sc, opts, runtime
        self.free_before: float | None = None
        self.free_after: float | None = None
        run = sc.run
        rec = Recorder()
        state = SharedState(sc.policy.queues(sc), run.sessions, run.chunks,
                            run.source == "saturated", rec, runtime.now_ms, opts.timeout_s)
        costs = CostTable(sc.costs, run.sessions, run.chunks, run.seed)
        setup = KernelSetup(sc, costs, runtime, opts.model_size, opts.calibration_path,
                            cancel=state.aborted, recalibrate=opts.recalibrate,
                            recheck=opts.recheck_calibration)
        self.family = make_family(opts.kernels, setup)
        self.ctx = RunContext(state, runtime, self._kernels(), rec, sc.transport,
                              run.source == "saturated", progress=progress,
                              total=run.chunks * run.sessions)
        self.ctx.stage_locks = {s: threading.Lock() for s in runtime.stages}
        if opts.modelled_transport:
            srcs = sorted({q.spec.src for q in state.queues.values()})
            self.ctx.lanes = {s: CommLane(s, state, sc.transport, self.ctx.fail) for s in srcs}

    def _kernels(self) -> dict[str, Kernels]:
        kernels: dict[str, Kernels] = {}
        fault = self.opts.fault
        for stage in self.runtime.stages:
            k: Kernels = self.family.for_stage(stage)
            if fault is not None and fault.stage in (None, stage):
                k = FaultyKernels(k, fault)
            kernels[stage] = k
        return kernels

    def _threads(self) -> list[threading.Thread]:
        programs = self.sc.policy.programs(self.sc)
        names = worker_names([sp.stage for sp in programs])
        for who in names:
            self.ctx.state.join(who)
        return [threading.Thread(target=drive, args=(self.ctx, sp, who), daemon=True,
                                 name=f"pipefill-{who}") for sp, who in zip(programs, names,
                                                                           strict=True)]

    def execute(self) -> Trace:
        ctx, state = self.ctx, self.ctx.state
        self.free_before = self._free_cores()
        workers = self._threads()
        ctx.ready = threading.Barrier(len(workers) + 1)
        realtime = self.sc.run.source == "realtime"
        if realtime:
            state.add_pending(1)  # inputs still to come: waiting for them is no deadlock
        for w in workers:
            w.start()
        self._start_clock()
        for lane in ctx.lanes.values():
            lane.thread.start()
        if realtime:
            threading.Thread(target=feed_inputs,
                             args=(state, self.sc.run, source_stages(self.sc)),
                             daemon=True, name="pipefill-source").start()
        try:
            self._watch(workers)
        except KeyboardInterrupt:  # stop like a failure, so what ran is still written
            ctx.fail("interrupted (Ctrl-C)")
            self._watch(workers)
        for lane in ctx.lanes.values():
            lane.close()
            lane.thread.join(self.opts.timeout_s)
        self.free_after = None if ctx.failure else self._free_cores()
        trace = ctx.rec.trace(self._meta())
        if ctx.failure is not None:
            stuck = tuple(w.name.removeprefix("pipefill-") for w in workers if w.is_alive())
            raise ExecError(ctx.failure, trace, stuck)
        return trace

    def _start_clock(self) -> None:
        """Time zero once every worker has warmed up in its own thread (or failed)."""
        ctx = self.ctx
        warm_up(ctx, self.opts.timeout_s, ctx.state.aborted)
        self.runtime.start()
        self.ctx.state.progress_at = time.monotonic()
        ctx.go.set()

    def _watch(self, workers: list[threading.Thread]) -> None:
        """Wait for the workers; fail the run if nothing progresses for ``timeout_s``.

        After a failure the others get ``timeout_s`` to notice; a worker stuck inside
        a kernel is abandoned (daemon thread) so the run still ends and is written.
        """
        state, timeout = self.ctx.state, self.opts.timeout_s
        while any(w.is_alive() for w in workers):
            if state.aborted.wait(0.05):
                deadline = time.monotonic() + timeout
                for w in workers:
                    w.join(max(0.0, deadline - time.monotonic()))
                return
            idle = time.monotonic() - state.progress_at
            if idle > timeout:
                self.ctx.fail(stall_line(state, idle, timeout))

    def _groups(self) -> dict[str, tuple[str, ...]]:
        return self.sc.placement.groups(self.runtime.stages)

    def _work_ms(self) -> dict[str, float]:
        """Calibrated ms of kernel work per stage (calibrated kernels; looks through
        wrappers such as fault injection)."""
        work = {stage: kernel_work_ms(k) for stage, k in self.ctx.kernels.items()}
        return {stage: w for stage, w in work.items() if w is not None}

    def _free_cores(self) -> float | None:
        """Free cores for the stages' devices right now (CPU, when probing is on)."""
        need = len(self._groups())
        if not self.opts.probe_load or self.runtime.kind != "cpu" or need < 2:
            return None
        return free_cores(need)

    def _meta(self) -> dict[str, Any]:
        ctx, opts = self.ctx, self.opts
        trust = parallelism(self.runtime.kind, self._groups(), ctx.usage,
                            (self.free_before, self.free_after), self._work_ms())
        return exec_meta(self.sc, opts, backend="threads", device=self.runtime.describe(),
                         error=ctx.failure,
                         fault=None if opts.fault is None else vars(opts.fault),
                         kernels=self.family.info, parallelism=trust,
                         transport_mode="modelled" if opts.modelled_transport else "handoff")
