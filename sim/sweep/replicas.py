"""Replicas: the same scenario under R seeds (in parallel processes), with 95% intervals.

Replica i runs with ``run.seed = seed + i``. For each metric the mean over replicas and
a two-sided 95% Student-t confidence interval of that mean are reported
(``mean +- t(0.975, n-1) * sd / sqrt(n)``); a replica where a metric is missing is left
out of that metric's estimate (``n`` says how many counted). Deterministic costs give
identical replicas and a zero-width interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipefill.sim.engine.choice import choose, metrics_batch
from pipefill.sim.errors import ScenarioError
from pipefill.sim.precision import Precision
from pipefill.sim.scenario.load import apply_overrides, build_scenario
from pipefill.traces.steady import t975

__all__ = ["ReplicaSummary", "run_replicas", "t975"]

#: metrics summarised across replicas
REPLICA_KEYS = ("period_ms", "period_p50_ms", "fps", "overlap_score", "overlap_window", "ttff_ms",
                "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "deadline_misses",
                "peak_bytes_in_flight")

@dataclass(frozen=True)
class Estimate:
    """Mean of a metric over replicas and its 95% interval (None bounds with n < 2)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci95_low": self.low, "ci95_high": self.high, "n": self.n}


def estimate(values: list[float]) -> Estimate:
    if not values:
        return Estimate(None, None, None, 0)
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if len(arr) < 2:
        return Estimate(mean, None, None, 1)
    half = t975(len(arr) - 1) * float(arr.std(ddof=1)) / math.sqrt(len(arr))
    return Estimate(mean, mean - half, mean + half, len(arr))


@dataclass(frozen=True)
class ReplicaSummary:
    """Per-replica metrics and their estimates."""

    seeds: tuple[int, ...]
    runs: tuple[dict[str, Any], ...]
    estimates: dict[str, Estimate]

    def to_json(self) -> dict[str, Any]:
        return {"replicas": len(self.seeds), "seeds": list(self.seeds), "confidence": 0.95,
                "metrics": {k: e.to_json() for k, e in self.estimates.items()}}


def _run_some(job: tuple[dict[str, Any], str, list[int], str, Precision | None]
              ) -> list[dict[str, Any]]:
    """Seeds of one scenario; on the fast path they are re-timed together in one pass."""
    raw, name, seeds, engine, precision = job
    scs = [build_scenario(apply_overrides(raw, [f"run.seed={s}"]), name=name) for s in seeds]
    return [{"seed": s, "engine": m["engine"], **{k: m.get(k) for k in REPLICA_KEYS}}
            for s, m in zip(seeds, metrics_batch(scs, engine, precision), strict=True)]


def run_replicas(raw: dict[str, Any], name: str, replicas: int, workers: int = 1,
                 progress: Callable[[int, int], None] | None = None,
                 engine: str = "auto", precision: Precision | None = None) -> ReplicaSummary:
    """Run ``replicas`` seeds of the scenario ``raw`` (already overridden); validate first."""
    if replicas < 1:
        raise ScenarioError("--replicas", f"must be >= 1 (got {replicas})")
    sc = build_scenario(raw, name=name)
    choose(sc, engine, precision=precision)
    seeds = [sc.run.seed + i for i in range(replicas)]
    parts = max(1, min(workers, replicas))
    jobs = [(raw, name, seeds[i::parts], engine, precision) for i in range(parts)]
    runs: list[dict[str, Any]] = []
    if parts > 1:
        with ProcessPoolExecutor(max_workers=parts) as pool:
            for part in pool.map(_run_some, jobs):
                runs.extend(part)
                if progress:
                    progress(len(runs), replicas)
    else:
        runs = _run_some(jobs[0])
        if progress:
            progress(len(runs), replicas)
    runs.sort(key=lambda r: r["seed"])
    est = {k: estimate([float(r[k]) for r in runs if r.get(k) is not None])
           for k in REPLICA_KEYS}
    return ReplicaSummary(tuple(seeds), tuple(runs), est)
