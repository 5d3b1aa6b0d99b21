"""Which engine runs a scenario: the fast path where it is valid, SimPy elsewhere.

``auto`` takes the fast path (:mod:`pipefill.sim.fast.path`) for fixed-order schedules
unless a trace is written (``writes_trace``: SimPy's trace keeps its event order, golden
traces included), and the SimPy engine otherwise;
``simpy`` and ``fast`` force one. Forcing ``fast`` on a choice-dependent schedule is a
``ScenarioError`` on ``--engine`` that says which choice depends on timing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipefill.sim.engine.core import StallError
from pipefill.sim.engine.stream import simulate_summary
from pipefill.sim.fast.metrics import fast_metrics, metric_index
from pipefill.sim.fast.path import compile_plan, fast_reason, fast_trace, time_batch, trace_of
from pipefill.sim.scenario.load import ScenarioError
from pipefill.sim.scenario.model import Scenario
from pipefill.traces.io import write_trace
from pipefill.traces.metrics import compute_metrics

ENGINES = ("auto", "simpy", "fast")


def _simpy(sc: Scenario, out: Path | None) -> dict[str, Any]:
    """SimPy: metrics online, the trace streamed to ``out`` (flat memory)."""
    return simulate_summary(sc, out).metrics


def _fast(sc: Scenario, out: Path | None) -> dict[str, Any]:
    """The fast path: the run's trace (written to ``out``) and its metrics."""
    trace = fast_trace(sc)
    if out is not None:
        write_trace(trace, out)
    return compute_metrics(trace)


#: engine name -> how it runs one scenario into metrics (and a trace file)
RUNNERS: dict[str, Callable[[Scenario, Path | None], dict[str, Any]]] = {
    "simpy": _simpy, "fast": _fast}


def choose(sc: Scenario, engine: str, writes_trace: bool = False) -> str:
    """The engine that runs ``sc``; ``writes_trace``: a trace will be written."""
    if engine not in ENGINES:
        raise ScenarioError("--engine", f"unknown engine {engine!r} (allowed: "
                            f"{', '.join(ENGINES)})")
    reason = fast_reason(sc)
    if engine == "fast" and reason is not None:
        raise ScenarioError("--engine", f"fast: {reason}")
    if engine == "auto":
        return "fast" if reason is None and not writes_trace else "simpy"
    return engine


def run(sc: Scenario, engine: str = "auto", out: str | Path | None = None) -> dict[str, Any]:
    """Run ``sc`` on the chosen engine (its trace to ``out`` if given); its metrics with
    ``engine`` naming the engine that ran it."""
    path = Path(out) if out is not None else None
    used = choose(sc, engine, writes_trace=path is not None)
    return {**RUNNERS[used](sc, path), "engine": used}


def metrics_batch(scenarios: Sequence[Scenario], engine: str = "auto") -> list[dict[str, Any]]:
    """Metrics of many scenarios: fast-path points that share a structure are re-timed
    together in one pass; the rest run on SimPy. Each result carries ``engine`` (and
    ``error`` instead of metrics when a schedule stalls)."""
    from pipefill.sim.fast.path import structure_key

    out: list[dict[str, Any] | None] = [None] * len(scenarios)
    groups: dict[str, list[int]] = {}
    for i, sc in enumerate(scenarios):
        if choose(sc, engine) == "fast":
            groups.setdefault(structure_key(sc), []).append(i)
        else:
            out[i] = _simpy_metrics(sc)
    for members in groups.values():
        timed = time_batch(compile_plan(scenarios[members[0]]), [scenarios[i] for i in members])
        index = metric_index(timed)
        for col, i in enumerate(members):
            sc = scenarios[i]
            out[i] = fast_metrics(timed, col, sc, index) if sc.run.sessions == 1 else \
                {**compute_metrics(trace_of(timed, col, sc)), "engine": "fast"}
    return [r for r in out if r is not None]


def _simpy_metrics(sc: Scenario) -> dict[str, Any]:
    try:
        return {**simulate_summary(sc).metrics, "engine": "simpy"}
    except StallError as exc:
        return {"error": str(exc), "engine": "simpy"}
