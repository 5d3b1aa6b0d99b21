"""Golden traces: the simulator's exact output for small scenarios, checked in as CSV.

Regenerate after an intended change with ``PIPEFILL_UPDATE_GOLDEN=1 pytest
tests/sim/engine/test_golden.py`` and review the diff of the CSV files like code.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
import pytest

from pipefill.sim.engine.core import simulate
from pipefill.traces.io import read_table, write_table
from pipefill.traces.schema import validate
from tests.helpers import ROOT
from tests.helpers.scenarios import make_scenario

GOLDEN = ROOT / "tests" / "golden"
TRANSPORT = {"latency_ms": 0.25, "bandwidth_gbps": 2.0, "envelope_bytes": 1_000_000,
             "result_bytes": 500_000, "context_bytes": 200_000}
COSTS = {"build": 1.5, "denoise": {"mean": 4.0, "steps": 2}, "recompute": 2.0,
         "decode": 6.0, "anchor_decode": 1.0, "encode": 1.5}
CASES: dict[str, dict[str, Any]] = {
    "serial_r0a": {"name": "serial", "recompute": "r0a"},
    "phase_pp_r0a_anchor_cut": {"name": "phase_pp", "recompute": "r0a", "recompute_lag": 0,
                                "anchor": "anchor_only", "hard_cuts": [5]},
    "phase_pp_consumer_first_d1": {"name": "phase_pp", "d_in": 1, "d_out": 2,
                                   "stage0_order": "consumer_first", "recompute": "r0"},
    "layer_pp_3_stages": {"name": "layer_pp", "stages": 3, "items": 2, "blocks": 6},
    "stream_batch_3_stages": {"name": "stream_batch", "stages": 3, "steps": 3, "blocks": 7,
                              "max_outstanding": 2},
    "rolling_window_cut": {"name": "rolling_window", "window": 2, "hard_cuts": [3]},
    "multi_session_window": {"name": "multi_session", "max_batch": 2, "batch_window_ms": 1.0},
}
#: run fields a case needs beyond the defaults
RUN: dict[str, dict[str, Any]] = {"multi_session_window": {"sessions": 3}}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_trace(case):
    trace = simulate(make_scenario(CASES[case], COSTS, chunks=9, transport=TRANSPORT,
                                   **RUN.get(case, {})))
    path = GOLDEN / f"{case}.csv"
    if os.environ.get("PIPEFILL_UPDATE_GOLDEN"):
        write_table(trace.events, path, {"case": case})
    golden, _ = read_table(path)
    pd.testing.assert_frame_equal(trace.events, validate(golden), check_exact=False,
                                  rtol=0, atol=1e-9)
