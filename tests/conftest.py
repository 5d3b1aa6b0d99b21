"""Fixtures and the hypothesis profiles of the whole suite (helpers: tests/helpers/)."""

from __future__ import annotations

import os

import pytest

from tests.helpers.scenarios import make_scenario


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
