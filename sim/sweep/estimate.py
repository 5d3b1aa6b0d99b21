"""How long a sweep will take, from a short pilot, before it starts.

A point's work is its cap in chunks (:func:`~pipefill.sim.sweep.points.point_cost`: a
fast-path chunk a small share of a SimPy one). :func:`estimate` times a pilot of each
engine on this machine (the heaviest SimPy point and a batch of one fast-path structure,
each run at :data:`PILOT_CHUNKS` and at half that: the difference is the cost per chunk
beyond a run's set-up) and scales the grid's work by it over the workers. A sweep to a
precision can only end sooner (``at_most``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipefill.sim.sweep.points import SweepPoint

#: chunks of a pilot run
PILOT_CHUNKS = 300
#: points of one structure timed together in the fast-path pilot (a task's width: the
#: cost per point falls with it)
PILOT_BATCH = 256


@dataclass(frozen=True)
class SweepEstimate:
    """``points`` to run (``simpy`` of them on SimPy, the rest in ``structures`` fast-path
    batches), about ``seconds`` on ``workers``; ``at_most`` when points may stop early."""

    points: int
    simpy: int
    structures: int
    seconds: float
    workers: int
    at_most: bool


def _short(p: SweepPoint, chunks: int) -> Any:
    sc = p.scenario()
    chunks = min(sc.run.chunks, chunks)
    warmup = 0 if sc.run.warmup == "auto" else min(sc.run.warmup, chunks - 1)
    return sc.model_copy(update={"run": sc.run.model_copy(update={"chunks": chunks,
                                                                  "warmup": warmup})})


def _marginal(run: Callable[[int], object]) -> float:
    """Seconds per chunk of ``run(chunks)``, from the difference of two lengths (what a
    run costs beyond its set-up), after one warm-up run."""
    run(20)
    times = []
    for chunks in (PILOT_CHUNKS // 2, PILOT_CHUNKS):
        t = time.perf_counter()
        run(chunks)
        times.append(time.perf_counter() - t)
    return max(times[1] - times[0], times[1] / 4) / (PILOT_CHUNKS - PILOT_CHUNKS // 2)


def _simpy_rate(points: Sequence[SweepPoint]) -> float:
    """Seconds per chunk (per session) of the heaviest SimPy point."""
    from pipefill.sim.engine.stream import simulate_summary

    p = max(points, key=lambda q: q.weight)
    sessions = p.scenario().run.sessions
    return _marginal(lambda n: simulate_summary(_short(p, n))) / sessions


def _fast_rate(points: Sequence[SweepPoint]) -> float:
    """Seconds per chunk-configuration of a batch of one structure."""
    from pipefill.sim.fast.run import run_batch

    group = points[0].group
    batch = [p for p in points if p.group == group][:PILOT_BATCH]
    return _marginal(lambda n: run_batch([_short(p, n) for p in batch])) / len(batch)


def estimate(points: Sequence[SweepPoint], workers: int) -> SweepEstimate:
    """The grid's time from a pilot of each engine it uses (see the module doc)."""
    simpy = [p for p in points if p.group is None]
    fast = [p for p in points if p.group is not None]
    seconds = 0.0
    if simpy:
        seconds += _simpy_rate(simpy) * sum(p.weight for p in simpy)
    if fast:
        seconds += _fast_rate(fast) * sum(p.weight for p in fast)
    at_most = any(p.precision is not None for p in points)
    return SweepEstimate(len(points), len(simpy), len({p.group for p in fast}),
                         seconds / max(1, workers), workers, at_most)
