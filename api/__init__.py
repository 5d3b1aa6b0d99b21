"""pipefill: predict and measure how streaming video-DiT pipelines fill their stages.

The public Python API. Every name in ``__all__`` is stable and documented in the
README's "Python API" section (a test keeps the two in step). The names load on first
use (PEP 562), so ``import pipefill`` itself loads none of pandas, numba, simpy or torch.

    import pipefill
    sim = pipefill.simulate(sets=["policy.d_out=1"])
    sim.metrics["period_ms"], sim.trace.events.head()

Scenarios: :func:`load_scenario` (a TOML file or the built-in default, with ``--set``
style overrides), :func:`build_scenario` (from tables), :func:`policies`.
Model: :func:`simulate`, :func:`sweep`, :func:`bound`, :func:`study` (the brief's
experiments). Measure: :func:`replay`,
:func:`calibrate`, :func:`diff`, :func:`read_trace`. Results are typed objects with a
``to_json()`` form: the very objects the ``pipefill`` command renders.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> module that defines it
_SOURCES: dict[str, str] = {
    # scenarios
    "Scenario": "pipefill.sim.scenario.model",
    "load_scenario": "pipefill.predict",
    "build_scenario": "pipefill.predict",
    "policies": "pipefill.predict",
    "PolicyDoc": "pipefill.sim.policies.catalog",
    # the model
    "simulate": "pipefill.predict",
    "Simulation": "pipefill.results",
    "sweep": "pipefill.predict",
    "SweepResult": "pipefill.results",
    "bound": "pipefill.predict",
    "Bound": "pipefill.sim.bound.analysis",
    "study": "pipefill.predict",
    "StudyResult": "pipefill.sim.study.result",
    "StudySpec": "pipefill.sim.study.spec",
    # measuring
    "replay": "pipefill.measure",
    "ReplayOptions": "pipefill.exec.threads.replay",
    "DistOptions": "pipefill.exec.dist.config",
    "Replay": "pipefill.results",
    "calibrate": "pipefill.measure",
    "Calibrated": "pipefill.sim.fit.calibrate",
    "diff": "pipefill.measure",
    "check": "pipefill.measure",
    "CheckReport": "pipefill.traces.check",
    "explain": "pipefill.measure",
    "Explanation": "pipefill.traces.explain",
    "Diff": "pipefill.results",
    "read_trace": "pipefill.traces.io",
    "write_trace": "pipefill.traces.io",
    "Trace": "pipefill.traces.schema",
    # errors
    "ScenarioError": "pipefill.sim.errors",
    "StallError": "pipefill.sim.errors",
    "TraceError": "pipefill.traces.schema",
    "ReplayError": "pipefill.results",
}

#: the documented surface (tests keep it equal to _SOURCES and the README)
__all__ = [
    "Bound", "Calibrated", "CheckReport", "Diff", "DistOptions", "Explanation", "PolicyDoc",
    "Replay", "ReplayError", "ReplayOptions", "Scenario", "ScenarioError", "Simulation",
    "StallError", "StudyResult", "StudySpec", "SweepResult", "Trace", "TraceError", "bound",
    "build_scenario", "calibrate", "check", "diff", "explain", "load_scenario", "policies",
    "read_trace", "replay", "simulate", "study", "sweep", "write_trace",
]


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'pipefill' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ loads it
    from pipefill.exec.dist.config import DistOptions
    from pipefill.exec.threads.replay import ReplayOptions
    from pipefill.measure import calibrate, check, diff, explain, replay
    from pipefill.predict import (
        bound,
        build_scenario,
        load_scenario,
        policies,
        simulate,
        study,
        sweep,
    )
    from pipefill.results import Diff, Replay, ReplayError, Simulation, SweepResult
    from pipefill.sim.bound.analysis import Bound
    from pipefill.sim.errors import ScenarioError, StallError
    from pipefill.sim.fit.calibrate import Calibrated
    from pipefill.sim.policies.catalog import PolicyDoc
    from pipefill.sim.scenario.model import Scenario
    from pipefill.sim.study.result import StudyResult
    from pipefill.sim.study.spec import StudySpec
    from pipefill.traces.check import CheckReport
    from pipefill.traces.explain import Explanation
    from pipefill.traces.io import read_trace, write_trace
    from pipefill.traces.schema import Trace, TraceError
