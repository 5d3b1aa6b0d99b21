"""Shared helpers: small scenarios built from plain dicts."""

from __future__ import annotations

import os
from typing import Any

import pytest

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


@pytest.fixture
def scenario_factory():
    return make_scenario


# CI runs a fixed example sequence (no flaky first-time finds on a submission); local
# runs explore new examples each time. `--hypothesis-profile=deep` explores 10x longer.
from hypothesis import settings  # noqa: E402

settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("deep", max_examples=600, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
