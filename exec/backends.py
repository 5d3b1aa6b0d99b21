"""Replay on a chosen backend, crash-only: what was measured is written even on failure.

:func:`replay_to_file` is the executor's one entry point for a caller that wants a
trace file (the CLI): it runs the scenario on a backend of :data:`REPLAY_BACKENDS`,
writes the measured trace to ``out`` (the partial one when the run failed or was
interrupted with Ctrl-C, its metadata saying ``status = "failed"``) and returns a
:class:`ReplayOutcome`. Bad input raises :class:`ExecConfigError` (a ``ScenarioError``)
before anything is written; a failed run is an outcome, not an exception, because the
caller must still be told whether it may unwind normally (``exit_now``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pipefill.exec.dist.config import DistOptions, RankEnv
from pipefill.exec.dist.faults import DistFault
from pipefill.exec.dist.rank import run_rank
from pipefill.exec.dist.spawn import spawn_replay
from pipefill.exec.errors import ExecConfigError, ExecError
from pipefill.exec.kernels.registry import Fault
from pipefill.exec.threads.backend import Progress
from pipefill.exec.threads.replay import ReplayOptions, replay
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.io import read_trace, write_trace
from pipefill.traces.schema import Trace

#: exit status of a replay: 0 ok, 2 bad input (found by a launched rank), 3 the run failed
OK, BAD_INPUT, FAILED = 0, 2, 3


@dataclass(frozen=True)
class ReplayOutcome:
    """How a replay ended, after its trace (whole or partial) was written.

    ``trace``: the measured trace; None where this process does not report (a mesh rank
    under torchrun) or when the run failed. ``error``: the one-line cause, naming the
    partial trace when one was written (None on success). ``code``: :data:`OK`,
    :data:`BAD_INPUT` or :data:`FAILED`. ``exit_now``: a thread of this process may sit
    in a kernel or a collective forever, so the caller must leave without interpreter
    teardown (``os._exit``) instead of unwinding.
    """

    trace: Trace | None
    error: str | None = None
    code: int = OK
    exit_now: bool = False


@dataclass(frozen=True)
class ReplayRequest:
    """One replay: the scenario, the executor and dist options, an optional ``--inject``
    fault spec, the trace file and a progress callback (threads backend)."""

    sc: Scenario
    opts: ReplayOptions
    dopts: DistOptions
    inject: str | None
    out: Path
    progress: Progress | None = None


def _written(out: Path) -> str:
    return f" (partial trace written to {out})"


def _threads(req: ReplayRequest) -> ReplayOutcome:
    """Every stage a thread of this process."""
    if req.dopts != DistOptions():
        raise ExecConfigError("--mesh-size/--world-size/--master-addr/--master-port/"
                              "--dist-backend", "only with --backend dist")
    opts = replace(req.opts, fault=Fault.parse(req.inject) if req.inject else None)
    try:
        trace = replay(req.sc, opts, progress=req.progress)
    except ExecError as exc:
        write_trace(exc.trace, req.out)
        # a kernel that never returned would abort interpreter teardown inside it
        return ReplayOutcome(None, f"{exc}{_written(req.out)}", FAILED, bool(exc.abandoned))
    write_trace(trace, req.out)
    return ReplayOutcome(trace)


def _dist(req: ReplayRequest) -> ReplayOutcome:
    """Under torchrun this process is one rank; else launch every rank as a child."""
    env = RankEnv.from_environ()
    if env is not None:
        return _rank(req, env)
    outcome = spawn_replay(req.sc, req.opts, req.dopts, req.inject, req.out)
    if outcome.code == BAD_INPUT:
        return ReplayOutcome(None, str(outcome.error), BAD_INPUT)
    if outcome.code != OK:
        written = outcome.report is not None and outcome.report.trace_written
        return ReplayOutcome(None, f"{outcome.error}" + (_written(req.out) if written else ""),
                             FAILED)
    return ReplayOutcome(read_trace(req.out))


def _rank(req: ReplayRequest, env: RankEnv) -> ReplayOutcome:
    """One rank of a torchrun launch: rank0 writes the trace and reports; others are quiet."""
    fault = DistFault.parse(req.inject) if req.inject else None
    result = run_rank(req.sc, req.opts, req.dopts, env, fault)
    if result.trace is not None:
        write_trace(result.trace, req.out)
    if result.error is not None:
        written = _written(req.out) if result.trace is not None else ""
        # its comms thread or a collective may still be blocked: never unwind
        return ReplayOutcome(None, f"{result.error}{written}", FAILED, exit_now=True)
    return ReplayOutcome(result.trace)


#: ``--backend`` -> how to run it (CLI choices and errors come from here)
REPLAY_BACKENDS: dict[str, Callable[[ReplayRequest], ReplayOutcome]] = {
    "threads": _threads, "dist": _dist}


def replay_to_file(req: ReplayRequest, backend: str = "threads") -> ReplayOutcome:
    """Run ``req`` on ``backend`` and write its trace (the partial one on failure)."""
    run = REPLAY_BACKENDS.get(backend)
    if run is None:
        raise ExecConfigError("--backend", f"unknown backend {backend!r} "
                              f"(allowed: {', '.join(REPLAY_BACKENDS)})")
    return run(req)
