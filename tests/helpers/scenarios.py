"""Small scenarios built from plain dicts."""

from __future__ import annotations

from typing import Any

from pipefill.sim.scenario.load import build_scenario
from pipefill.sim.scenario.model import Scenario

#: zero-cost transport so hand-derived schedules only contain compute
NO_TRANSPORT = {"latency_ms": 0.0, "bandwidth_gbps": 1.0, "envelope_bytes": 0, "result_bytes": 0}


def make_scenario(policy: dict[str, Any], costs: dict[str, Any], chunks: int = 12,
                  warmup: int = 2, transport: dict[str, Any] | None = None,
                  **run: Any) -> Scenario:
    raw = {
        "run": {"chunks": chunks, "warmup": warmup, **run},
        "policy": dict(policy),
        "costs": dict(costs),
        "transport": dict(NO_TRANSPORT if transport is None else transport),
    }
    return build_scenario(raw, name="test")
