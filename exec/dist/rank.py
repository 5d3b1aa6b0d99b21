"""One rank of a dist replay: setup, the policy's own programs, watchdog, trace.

``run_rank`` runs the programs of this rank's stage (``policy.programs(scenario)``,
exactly what the SimPy engine and the threads executor run) with the threads
executor's worker loop and Backend (:mod:`pipefill.exec.threads.backend`); only the
state differs: :class:`pipefill.exec.dist.state.DistState` puts each queue's ends on
their ranks. Which rank runs which stage, and which links carry which queues, comes
from the policy (:mod:`pipefill.exec.dist.layout`).

Crash-only: a failure anywhere (a kernel raising or hanging, a lost rank, a malformed
frame, a refused collective) is published as one line in the store (the first one
wins: the root cause) and every rank stops; rank0 returns the trace of everything
recorded until then. A rank inside a kernel past the timeout is the culprit; a rank
only waiting gets a grace period on top, so the culprit's report arrives first.

Every rank records its own rows and handshakes its clock with rank0 at the start and,
after a run that succeeded, at the end; rank0 merges all ranks' rows and usage into
one trace (:mod:`pipefill.exec.dist.gather`, lanes: :mod:`pipefill.exec.dist.trace`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch

from pipefill.exec.threads.backend import RunContext, drive
from pipefill.exec.threads.comm_lane import feed_inputs, source_stages
from pipefill.exec.dist.comms import CommsSettings, link_device, open_comms
from pipefill.exec.dist.config import DistOptions, RankEnv, RankPlan, ranks_here
from pipefill.exec.dist.errors import RendezvousError, error_line
from pipefill.exec.dist.faults import DistFault, check_fault, wire_corruptor
from pipefill.exec.dist.layout import RankLayout
from pipefill.exec.dist.rendezvous import (
    Groups,
    barrier,
    close_groups,
    init_groups,
    open_store,
    publish_failure,
    read_failure,
    sync_clock,
    wait_key,
)
from pipefill.exec.dist.rank_kernels import build_kernels, check_tp
from pipefill.exec.lifecycle import stall_line, warm_up
from pipefill.exec.dist.rank_meta import link_backend_of, rank_meta
from pipefill.exec.dist.gather import (
    RankRecord,
    dist_parallelism,
    free_cores_of_run,
    merge_or_keep,
    post_record,
    post_start,
    read_records,
)
from pipefill.exec.dist.trace import DrainRecorder
from pipefill.exec.errors import ExecConfigError
from pipefill.exec.threads.replay import ReplayOptions, worker_names
from pipefill.exec.threads.runtime import Runtime, open_runtime
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.clock import SyncPoint
from pipefill.traces.schema import Trace

#: how often the watchdog looks at the store for another rank's failure
STORE_POLL_S = 0.1
#: setup waits (rendezvous, rank0's calibration) get at least this long
SETUP_TIMEOUT_S = 60.0
#: how long a failed rank waits for its workers and comms to stop before it reports
JOIN_S = 0.5
#: after a failure, how long rank0 waits for the other ranks' records (they notice the
#: failure within a store poll and wait JOIN_S for their workers)
GATHER_GRACE_S = 1.5


@dataclass(frozen=True)
class RankResult:
    """How a rank ended: ``trace`` on rank0 (None elsewhere), the run's ``error`` line
    (the root cause, None on success) and workers stuck inside a kernel."""

    rank: int
    trace: Trace | None
    error: str | None = None
    abandoned: tuple[str, ...] = ()


@dataclass
class RankContext(RunContext):
    """RunContext whose failure lines name the rank; remote failures keep their origin."""

    rank: int = 0
    remote: bool = False

    def fail(self, message: str) -> None:
        super().fail(f"rank{self.rank} {message}")

    def fail_remote(self, line: str) -> None:
        with self._fail_lock:
            self.remote = self.remote or self.failure is None
        RunContext.fail(self, line)


def check_run(sc: Scenario, opts: ReplayOptions, dopts: DistOptions,
              fault: DistFault | None) -> RankLayout:
    """Every bad-input check of a dist replay (before anything starts); the layout."""
    opts.check()
    layout = dopts.check(sc, opts.device)
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise ExecConfigError("--device", f"cuda requested but torch {torch.__version__} "
                              "sees no CUDA device (allowed here: cpu)")
    check_tp(opts, dopts.mesh_size)
    check_fault(fault, layout, [q.name for q in sc.policy.queues(sc)])
    return layout


def run_rank(sc: Scenario, opts: ReplayOptions, dopts: DistOptions, env: RankEnv,
             fault: DistFault | None = None) -> RankResult:
    """Run this process's rank to the end; bad input raises ExecConfigError."""
    layout = check_run(sc, opts, dopts, fault)
    env.check(layout, dopts)
    plan = RankPlan(env.rank, layout)
    if opts.device == "cuda":
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
    backend = dopts.backend_for(opts.device, layout.world)
    store = _open_store(env, plan, opts.timeout_s)
    if isinstance(store, RankResult):
        return store
    try:
        groups = init_groups(store, plan, backend, opts.timeout_s,
                             link_backend_of(opts, dopts, backend, layout.world))
        runtime = open_runtime(opts.device, (plan.stage,), opts.threads)
    except ExecConfigError:
        raise
    except Exception as exc:
        return _setup_failed(store, plan, exc)
    try:
        return _Rank(sc, opts, dopts, plan, fault, store, groups, runtime, backend).execute()
    except ExecConfigError:
        raise
    except Exception as exc:
        return _setup_failed(store, plan, exc)
    finally:
        runtime.close()


def _open_store(env: RankEnv, plan: RankPlan, timeout_s: float) -> Any:
    """The run's store, or the RankResult of a rendezvous that failed."""
    try:
        return open_store(env, max(SETUP_TIMEOUT_S, timeout_s))
    except ExecConfigError:
        raise
    except Exception as exc:
        return RankResult(plan.rank, None, f"rank{plan.rank} {plan.stage}: rendezvous at "
                          f"{env.master_addr}:{env.master_port} failed: {error_line(exc)}")


def _setup_failed(store: Any, plan: RankPlan, exc: Exception) -> RankResult:
    """Setup raised: publish it (the other ranks stop waiting) and end this rank."""
    line = (str(exc) if isinstance(exc, RendezvousError) else
            f"rank{plan.rank} {plan.stage}: setup failed: {error_line(exc)}")
    with contextlib.suppress(Exception):  # the store is gone too: this line stands
        line = publish_failure(store, line)
    return RankResult(plan.rank, None, line[:500])


class _Rank:
    """One rank's run: setup, threads, watchdog, teardown. Not reusable."""

    def __init__(self, sc: Scenario, opts: ReplayOptions, dopts: DistOptions, plan: RankPlan,
                 fault: DistFault | None, store: Any, groups: Groups, runtime: Runtime,
                 backend: str) -> None:
        self.sc, self.opts, self.dopts, self.plan = sc, opts, dopts, plan
        self.fault, self.store, self.groups, self.runtime = fault, store, groups, runtime
        self.backend = backend
        self.cancel = threading.Event()
        self.parent = os.getppid()  # a rank outliving its launcher stops itself
        self.rec = DrainRecorder()
        self.sync_note: str | None = None
        setup_s = max(SETUP_TIMEOUT_S, opts.timeout_s)
        if plan.rank != 0:  # rank0 calibrates first; the others then read its cache
            wait_key(store, "kernels0", setup_s)
        self.kernels, self.family_info, self.coll = build_kernels(
            sc, opts, plan, groups, runtime, self.cancel, fault)
        if plan.rank == 0:
            store.set("kernels0", "1")
        barrier(store, "ready", plan.world_size, setup_s)
        runtime.start()
        self.comm_dev = link_device(runtime, backend)
        self.free = [self._free_cores(), None]  # rank0, while the others wait for it
        point = sync_clock(plan, self.comm_dev, runtime.now_ms)
        self.sync: list[SyncPoint] = [] if point is None else [point]
        offset = 0.0 if point is None else point.ref_ms - point.local_ms
        if point is not None:
            post_start(store, plan.rank, point)
        settings = CommsSettings(dopts.poll_ms / 1e3, opts.timeout_s, _grace(opts.timeout_s),
                                 offset)
        self.comms, self.state = open_comms(sc, plan, groups, runtime, self.rec, self.cancel,
                                            backend, settings)
        self.ctx = RankContext(self.state, runtime, {plan.stage: self.kernels}, self.rec,
                               sc.transport, sc.run.source == "saturated", rank=plan.rank)
        self.ctx.stage_locks = {plan.stage: threading.Lock()}
        hooks = self.comms.hooks
        hooks.fail, hooks.remote_fail = self.ctx.fail, self.ctx.fail_remote
        hooks.failure = lambda: self.ctx.failure
        sends = frozenset(q for ch in self.comms.links for q in ch.cfg.sends)
        hooks.corrupt = wire_corruptor(fault, sends)

    # -- run -------------------------------------------------------------------------------
    def execute(self) -> RankResult:
        programs = [sp for sp in self.sc.policy.programs(self.sc) if sp.stage == self.plan.stage]
        names = worker_names([sp.stage for sp in programs])
        workers = [threading.Thread(target=drive, args=(self.ctx, sp, who), daemon=True,
                                    name=f"pipefill-{who}")
                   for sp, who in zip(programs, names, strict=True)]
        for who in names:
            self.state.join(who)
        fed = self._fed_here()
        if fed:
            self.state.add_pending(1)
        self.comms.start()
        self.ctx.ready = threading.Barrier(len(workers) + 1)
        for w in workers:
            w.start()
        self._all_warm()
        self.state.progress_at = time.monotonic()
        if fed:
            threading.Thread(target=feed_inputs, args=(self.state, self.sc.run, fed),
                             daemon=True, name="pipefill-source").start()
        try:
            self._watch(workers)
        except KeyboardInterrupt:
            self.ctx.fail("interrupted (Ctrl-C)")
        return self._finish(workers)

    def _fed_here(self) -> dict[int, str]:
        """Sessions whose realtime inputs arrive on this rank (its stage is their source)."""
        if self.sc.run.source != "realtime" or self.plan.follower:
            return {}
        return {s: st for s, st in source_stages(self.sc).items() if st == self.plan.stage}

    def _all_warm(self) -> None:
        """Release the workers once every rank's workers warmed up in their own threads
        (per-thread cuBLAS/cuDNN handles), so no rank's setup lands in chunk 0."""
        ctx, setup_s = self.ctx, max(SETUP_TIMEOUT_S, self.opts.timeout_s)

        def other_ranks() -> None:
            try:
                barrier(self.store, "warm", self.plan.world_size, setup_s)
            except RendezvousError as exc:
                ctx.fail(str(exc))

        warm_up(ctx, setup_s, self.cancel, other_ranks)
        if self.coll is not None:
            self.coll.wait_ms = 0.0  # the warm-ups' collectives are not the run's
        ctx.go.set()

    def _watch(self, workers: list[threading.Thread]) -> None:
        """Until the rank is done or failed: store polls, hang and silence detection."""
        next_poll = 0.0
        while self.ctx.failure is None:
            if not any(w.is_alive() for w in workers) and self.comms.closed.is_set():
                return
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + STORE_POLL_S
                self._poll_store()
            self._check_progress(workers)
            self.cancel.wait(0.02)

    def _poll_store(self) -> None:
        if os.getppid() != self.parent:
            self.ctx.fail(f"{self.plan.stage}: the launcher (pid {self.parent}) is gone")
            return
        try:
            line = read_failure(self.store)
        except Exception as exc:
            self.ctx.fail(f"{self.plan.stage}: the rendezvous store is unreachable (rank0 "
                          f"gone?): {type(exc).__name__}")
            return
        if line is not None:
            self.ctx.fail_remote(line)

    def _check_progress(self, workers: list[threading.Thread]) -> None:
        idle = time.monotonic() - self.state.progress_at
        timeout = self.opts.timeout_s
        busy = self.kernels.action
        if busy is not None and idle > timeout:
            self.ctx.fail(f"{self.plan.stage}: no progress for {idle:.1f} s (timeout "
                          f"{timeout:g} s) in '{busy.describe()}' ({_where(busy)})")
        elif idle > timeout + _grace(timeout):
            last = self.kernels.last
            self.ctx.fail(stall_line(self.state, idle, timeout, who=self.plan.stage,
                                     idle_doing="programs done, link still open",
                                     last=f" (last work: {_where(last) if last else 'none'})"))

    def _finish(self, workers: list[threading.Thread]) -> RankResult:
        ctx, plan = self.ctx, self.plan
        error = None
        if ctx.failure is not None:
            error = self._root_cause()
            # workers stop at their next wait; one stuck in a kernel is abandoned
            deadline = time.monotonic() + min(JOIN_S, self.opts.timeout_s)
            for w in workers:
                w.join(max(0.0, deadline - time.monotonic()))
            self.comms.closed.wait(max(0.0, deadline - time.monotonic()))
        else:
            barrier(self.store, "done", plan.world_size, self.opts.timeout_s + 5.0)
            self._end_sync()
            close_groups()
        stuck = tuple(w.name.removeprefix("pipefill-") for w in workers if w.is_alive())
        record = RankRecord.of_rank(plan, self.ctx.usage, self.kernels, self.sync,
                                    self.rec.take() if plan.rank else [], self.coll)
        if plan.rank != 0:
            with contextlib.suppress(Exception):  # the store is gone (rank0 died)
                post_record(self.store, record)
            return RankResult(plan.rank, None, error, stuck)
        return RankResult(plan.rank, self._gather(record, error), error, stuck)

    def _end_sync(self) -> None:
        """The end clock handshake (a drift needs two points); rank0 first measures the
        free cores while the other ranks wait for it."""
        self.free[1] = self._free_cores()
        try:
            point = sync_clock(self.plan, self.comm_dev, self.runtime.now_ms)
        except Exception as exc:  # the run succeeded: align by the start offset alone
            self.sync_note = f"end clock handshake failed: {error_line(exc)}"
            return
        if point is not None:
            self.sync.append(point)

    def _free_cores(self) -> float | None:
        return free_cores_of_run(self.plan, self.opts.probe_load, self.runtime.kind,
                                 ranks_here(self.plan.world_size))

    def _gather(self, own: RankRecord, error: str | None) -> Trace:
        """Rank0's trace: every rank's rows merged on its clock, every rank's usage."""
        wait = self.opts.timeout_s if error is None else GATHER_GRACE_S
        layout = self.plan.layout
        records, missing = read_records(self.store, self.plan.others, wait)
        complete = [own, *(r for r in records.values() if r.complete)]
        trust, usage = dist_parallelism(self.runtime.kind, complete,
                                        (self.free[0], self.free[1]), layout)
        meta = rank_meta(self.sc, self.opts, self.dopts, layout, self.backend,
                         self.runtime.describe(), error=error, fault=self.fault,
                         family=self.family_info, trust=trust, usage=usage,
                         clock_note=self.sync_note)
        return merge_or_keep(self.rec.trace(meta), records, self.comms.received(), missing,
                             layout)

    def _root_cause(self) -> str:
        line = self.ctx.failure or "failed"
        if self.ctx.remote:
            return line
        try:
            return publish_failure(self.store, line)
        except Exception:  # the store is gone (rank0 died): this rank's line stands
            return line


def _where(action: Any) -> str:
    tag = action.tag
    return f"chunk {tag.chunk}, epoch {tag.epoch}, call_id {tag.call_id}"


def _grace(timeout_s: float) -> float:
    """Extra wait of a rank that is only waiting, so a culprit's report comes first."""
    return min(5.0, max(0.5, timeout_s / 2))

