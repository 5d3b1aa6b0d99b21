"""Which engine runs a scenario: the fast path where it is valid, SimPy elsewhere.

``auto`` takes the fast path (:mod:`pipefill.sim.fast.run`) for fixed-order schedules
unless a trace is written (``writes_trace``: SimPy's trace keeps its event order, golden
traces included) or several sessions run long or to a precision (the fast path follows
one session's window online; several it re-times whole); the SimPy engine otherwise.
``simpy`` and ``fast`` force one. Forcing ``fast`` on a choice-dependent schedule is a
``ScenarioError`` on ``--engine`` that says which choice depends on timing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipefill.sim.errors import ScenarioError, StallError
from pipefill.sim.fast.plan import fast_reason, structure_key
from pipefill.sim.precision import Precision
from pipefill.sim.scenario.model import Scenario

ENGINES = ("auto", "simpy", "fast")
#: longest multi-session run the fast path re-times whole (it holds every node)
WHOLE_MAX = 4096
Progress = Callable[[int, int, float], None]


def choose(sc: Scenario, engine: str, writes_trace: bool = False,
           precision: Precision | None = None) -> str:
    """The engine that runs ``sc``; ``writes_trace``: a trace will be written."""
    if engine not in ENGINES:
        raise ScenarioError("--engine", f"unknown engine {engine!r} (allowed: "
                            f"{', '.join(ENGINES)})")
    reason = fast_reason(sc)
    if engine == "fast" and reason is not None:
        raise ScenarioError("--engine", f"fast: {reason}")
    whole = sc.run.sessions > 1 or writes_trace
    if engine == "fast" and whole and precision is not None:
        raise ScenarioError("--precision", "the fast path runs several sessions or a "
                            "written trace only to a fixed length: use --engine simpy")
    if engine == "auto":
        too_long = sc.run.sessions > 1 and (sc.run.chunks > WHOLE_MAX or precision is not None)
        return "fast" if reason is None and not writes_trace and not too_long else "simpy"
    return engine


def run(sc: Scenario, engine: str = "auto", out: str | Path | None = None,
        precision: Precision | None = None, progress: Progress | None = None
        ) -> dict[str, Any]:
    """Run ``sc`` on the chosen engine (its trace to ``out`` if given); its metrics with
    ``engine`` naming the engine that ran it."""
    path = Path(out) if out is not None else None
    used = choose(sc, engine, writes_trace=path is not None, precision=precision)
    if used == "simpy":
        from pipefill.sim.engine.stream import simulate_summary

        return {**simulate_summary(sc, path, precision=precision, progress=progress).metrics,
                "engine": used}
    if path is not None or sc.run.sessions > 1:
        return {**_whole(sc, path), "engine": used}
    from pipefill.sim.fast.run import run_batch

    fast_progress = None if progress is None else _chunk_progress(progress)
    return {**run_batch([sc], precision, fast_progress, keep_on_interrupt=True)[0],
            "engine": used}


def _chunk_progress(progress: Progress) -> Callable[[int, int], None]:
    import time

    t0 = time.perf_counter()
    return lambda done, total: progress(done, total, time.perf_counter() - t0)


def _whole(sc: Scenario, out: Path | None) -> dict[str, Any]:
    """The fast path re-timing the whole run: its trace (written to ``out``) and metrics."""
    from pipefill.sim.fast.path import fast_trace
    from pipefill.traces.io import write_trace
    from pipefill.traces.metrics import compute_metrics

    trace = fast_trace(sc)
    if out is not None:
        write_trace(trace, out)
    return compute_metrics(trace)


def metrics_batch(scenarios: Sequence[Scenario], engine: str = "auto",
                  precision: Precision | None = None) -> list[dict[str, Any]]:
    """Metrics of many scenarios: fast-path points that share a structure are re-timed
    together, block by block; the rest run on SimPy. Each result carries ``engine`` (and
    ``error`` instead of metrics when a schedule stalls)."""
    from pipefill.sim.fast.run import run_batch

    out: list[dict[str, Any] | None] = [None] * len(scenarios)
    groups: dict[str, list[int]] = {}
    for i, sc in enumerate(scenarios):
        used = choose(sc, engine, precision=precision)
        if used == "fast" and sc.run.sessions == 1:
            groups.setdefault(structure_key(sc), []).append(i)
        elif used == "fast":
            out[i] = {**_whole(sc, None), "engine": "fast"}
        else:
            out[i] = _simpy_metrics(sc, precision)
    for members in groups.values():
        results = run_batch([scenarios[i] for i in members], precision)
        for i, res in zip(members, results, strict=True):
            out[i] = {**res, "engine": "fast"}
    return [r for r in out if r is not None]


def _simpy_metrics(sc: Scenario, precision: Precision | None) -> dict[str, Any]:
    from pipefill.sim.engine.stream import simulate_summary

    try:
        return {**simulate_summary(sc, precision=precision).metrics, "engine": "simpy"}
    except StallError as exc:
        return {"error": str(exc), "engine": "simpy"}
