"""The measuring half of the API: replay on real kernels, calibrate a scenario to a
trace, diff predicted against measured. Traces may be given as objects or paths."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipefill.predict import resolve
from pipefill.results import Diff, Replay, ReplayError

if TYPE_CHECKING:
    from pipefill.exec.dist.config import DistOptions
    from pipefill.exec.threads.replay import ReplayOptions
    from pipefill.sim.fit.calibrate import Calibrated
    from pipefill.sim.study.result import StudyResult
    from pipefill.traces.check import CheckReport
    from pipefill.traces.explain import Explanation
    from pipefill.traces.schema import Trace


def as_trace(trace: Trace | str | os.PathLike[str], strict: bool = True) -> Trace:
    """A trace object as it is, or a file read: ``strict`` also applies the measured
    traces' checks (chunk ids, lanes), which ``check`` reports as rules instead."""
    from pipefill.traces.io import read_table, read_trace
    from pipefill.traces.schema import Trace, validate

    if isinstance(trace, Trace):
        return trace
    if strict:
        return read_trace(trace)
    df, meta = read_table(trace)
    return Trace(validate(df), meta)


def replay(scenario: Any = None, *, out: str | os.PathLike[str], sets: Sequence[str] = (),
           policy: str | None = None, backend: str = "threads",
           options: ReplayOptions | None = None, dist: DistOptions | None = None,
           inject: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> Replay | None:
    """Run the scenario's policy on torch kernels (``backend`` threads: a thread per
    stage; dist: a process per rank) and write the measured trace to ``out``.

    ``options``: device, kernels, timeouts (:class:`ReplayOptions`; default CPU and
    calibrated kernels); ``dist``: ranks and rendezvous for ``backend="dist"``. A failed
    run raises :class:`ReplayError` after writing the partial trace. Returns None in a
    mesh rank launched by torchrun (rank 0 reports).
    """
    from pipefill.exec.backends import ReplayRequest, replay_to_file
    from pipefill.exec.dist.config import DistOptions
    from pipefill.exec.threads.replay import ReplayOptions
    from pipefill.traces.metrics import compute_metrics

    sc = resolve(scenario, sets, policy)
    path = Path(out)
    req = ReplayRequest(sc, options or ReplayOptions(), dist or DistOptions(), inject, path,
                        progress)
    outcome = replay_to_file(req, backend)
    if outcome.error is not None:
        raise ReplayError(outcome.error, outcome.code, outcome.exit_now)
    if outcome.trace is None:
        return None
    trust = outcome.trace.meta.get("parallelism") or {}
    return Replay(sc, outcome.trace, compute_metrics(outcome.trace), path,
                  list(trust.get("warnings", [])))


def calibrate(trace: Trace | str | os.PathLike[str], *, dist: str = "auto",
              warmup: int | None = None, policy: str | None = None,
              sets: Sequence[str] | None = None,
              probed: dict[str, tuple[dict[int, float], str]] | None = None,
              out: str | os.PathLike[str] | None = None, header: str = "") -> Calibrated:
    """The trace's scenario with per-phase cost distributions, transport, dispatch gaps
    and shared-device contention fitted to it (``.scenario`` runs it, ``.toml()`` is the
    file). ``dist``: auto, constant, normal, lognormal or empirical; ``probed``: device
    -> (rates, note) measured elsewhere, used as they are. ``out`` writes the scenario
    TOML atomically, ``header`` its first comment line."""
    from pipefill.sim.fit.calibrate import calibrate_trace

    cal = calibrate_trace(as_trace(trace), dist=dist, warmup=warmup, policy=policy,
                          sets=list(sets) if sets is not None else None, probed=probed)
    if out is not None:
        from pipefill.traces.io import write_text

        write_text(Path(out), cal.toml(header=header))
    return cal


def diff(predicted: Trace | str | os.PathLike[str], measured: Trace | str | os.PathLike[str],
         *, tolerance: float = 0.2) -> Diff:
    """Predicted vs measured: metric errors, phase durations, the first divergence
    (order, outcome or timing beyond ``tolerance`` x the predicted period), verdict."""
    from pipefill.traces.diff import diff_traces

    return Diff(diff_traces(as_trace(predicted), as_trace(measured), tolerance))


def _label(trace: Trace | str | os.PathLike[str], label: str | None) -> str:
    return label or (Path(trace).name if isinstance(trace, str | os.PathLike) else "trace")


def check(trace: Trace | str | os.PathLike[str], *, label: str | None = None) -> CheckReport:
    """The protocol invariants of a trace (each chunk emitted once and in order, no stale
    epoch after a hard cut, call ids increasing, ranks in step, no overlapping spans,
    queues and bytes within the policy's bounds): each rule ok, broken (with its first
    row) or not checked (with the reason). ``.ok`` is True when none is broken."""
    from pipefill.sim.fit.facts import check as check_trace

    return check_trace(as_trace(trace, strict=False), _label(trace, label))


def explain(trace: Trace | str | os.PathLike[str], *, warmup: int | None = None,
            label: str | None = None) -> Explanation:
    """Why the trace's pipeline does not fill: every stage's idle time in the steady
    window by cause (starved, blocked, dependency, source, fill_drain, unattributed),
    the chains behind them and a one-line verdict with the lever that would move it."""
    from pipefill.sim.fit.facts import explain as explain_trace

    return explain_trace(as_trace(trace), warmup, _label(trace, label))


def measure_study(result: StudyResult, options: ReplayOptions | None = None) -> StudyResult:
    """``result`` with its key points (:meth:`StudyResult.key_points`) each run short
    (the study's ``replay.chunks``) on the model and on the threads executor, their
    metrics side by side in ``.measured``. A failed replay raises :class:`ReplayError`."""
    import dataclasses
    import tempfile

    from pipefill.predict import simulate
    from pipefill.sim.study.result import COMPARED, Measured

    short = result.spec.replay
    sets = (f"run.chunks={short.chunks}", f"run.warmup={short.warmup}")
    done = []
    with tempfile.TemporaryDirectory(prefix="pipefill-study-") as tmp:
        for i in result.key_points():
            sc = result.scenario_of(i, sets)
            pred = simulate(sc, keep_trace=False).metrics
            meas = replay(sc, out=Path(tmp) / f"point{i}.parquet", options=options)
            assert meas is not None  # threads: this process reports
            done.append(Measured(i, result.points.label(i), short.chunks,
                                 {k: pred.get(k) for k in COMPARED},
                                 {k: meas.metrics.get(k) for k in COMPARED},
                                 tuple(meas.warnings)))
    return dataclasses.replace(result, measured=tuple(done))
