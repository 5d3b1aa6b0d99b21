"""The engine reports a schedule that cannot progress instead of hanging."""

from __future__ import annotations

import pytest

from pipefill.sim.engine.core import simulate
from pipefill.sim.errors import StallError
from tests.helpers.broken_policies import Deadlock, Spin, scenario_with

COSTS = {"build": 1, "denoise": 1, "decode": 1}


def test_deadlock_names_stages_actions_and_queues():
    with pytest.raises(StallError) as info:
        simulate(scenario_with(Deadlock(), COSTS))
    msg = str(info.value)
    assert "stage0 blocked at 'reserve q_in'" in msg
    assert "stage1 blocked at 'get q_out'" in msg
    assert "q_in: 1/1 slots held" in msg


def test_livelock_is_caught():
    with pytest.raises(StallError, match="stage0: livelock at poll"):
        simulate(scenario_with(Spin(), COSTS))
