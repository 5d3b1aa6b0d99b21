"""Small simulated traces and runs the report tests read."""

from __future__ import annotations

from pathlib import Path

from pipefill.reports.inputs import Run
from pipefill.sim.engine.core import simulate
from pipefill.traces.metrics import compute_metrics
from pipefill.traces.schema import Trace
from tests.helpers.scenarios import make_scenario

COSTS = {"build": {"dist": "lognormal", "mean": 2.0, "cv": 0.1},
         "denoise": {"mean": 6.0, "steps": 2}, "recompute": 3.0,
         "decode": {"dist": "lognormal", "mean": 7.0, "cv": 0.1}, "encode": 1.5}


TRANSPORT = {"latency_ms": 0.05, "bandwidth_gbps": 10.0, "envelope_bytes": 400_000,
             "result_bytes": 400_000}


POLICY = {"name": "phase_pp", "d_in": 2, "d_out": 2, "recompute": "r0a", "recompute_lag": 1}


def make_trace(chunks: int = 30, **policy) -> Trace:
    sc = make_scenario({**POLICY, **policy}, COSTS, chunks=chunks, warmup=3,
                       transport=TRANSPORT)
    return simulate(sc)


def as_run(trace: Trace, role: str = "predicted") -> Run:
    return Run(Path("t.parquet"), trace, role, compute_metrics(trace))
