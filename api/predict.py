"""The model half of the API: scenarios, simulate, sweep, bound.

Every function takes a scenario as a :class:`~pipefill.sim.scenario.model.Scenario`, a
TOML path, or None for the built-in default, plus ``sets`` (``"table.field=value"``
overrides, as ``--set``) and ``policy`` (switch policy, as ``--policy``). Bad input
raises :class:`~pipefill.sim.errors.ScenarioError` naming the field.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipefill.results import Simulation, SweepResult

if TYPE_CHECKING:
    from pipefill.exec.threads.replay import ReplayOptions
    from pipefill.sim.bound.analysis import Bound
    from pipefill.sim.policies.catalog import PolicyDoc
    from pipefill.sim.scenario.model import Scenario
    from pipefill.sim.study.result import StudyResult
    from pipefill.sim.study.spec import StudySpec



def load_scenario(path: str | os.PathLike[str] | None = None, sets: Sequence[str] = (),
                  *, policy: str | None = None) -> Scenario:
    """A TOML scenario (merged over the built-in default; None: the default itself)."""
    from pipefill.sim.scenario.load import load_scenario as load
    from pipefill.sim.scenario.load import with_policy

    return load(Path(path) if path is not None else None, with_policy(policy, sets))


def build_scenario(tables: Mapping[str, Any], sets: Sequence[str] = (), *,
                   name: str = "scenario") -> Scenario:
    """A scenario from tables (``{"run": {...}, "policy": {"name": ...}, ...}``) merged
    over the built-in default, as a TOML file would be."""
    from pipefill.sim.scenario.load import apply_overrides, merge_over_default
    from pipefill.sim.scenario.load import build_scenario as build

    return build(apply_overrides(merge_over_default(dict(tables)), list(sets)), name=name)


def policies(name: str | None = None) -> list[PolicyDoc]:
    """Every registered policy (or one): summary, contract and fields with their types,
    defaults, ranges and descriptions, read from the policies' own schemas."""
    from pipefill.sim.policies import policy_docs

    return policy_docs(name)


def _raw(scenario: Any, sets: Sequence[str], policy: str | None) -> tuple[dict[str, Any], str]:
    """The scenario's tables and name with ``policy``/``sets`` applied."""
    from pipefill.sim.scenario.load import apply_overrides, load_raw, with_policy
    from pipefill.sim.scenario.model import Scenario

    raw, name = (scenario.raw, scenario.name) if isinstance(scenario, Scenario) \
        else load_raw(scenario)
    return apply_overrides(raw, with_policy(policy, sets)), name


def resolve(scenario: Any = None, sets: Sequence[str] = (), policy: str | None = None
            ) -> Scenario:
    """``scenario`` (an object, a path or None) with ``policy`` and ``sets`` applied."""
    from pipefill.sim.scenario.load import build_scenario as build
    from pipefill.sim.scenario.model import Scenario

    if isinstance(scenario, Scenario) and not sets and policy is None:
        return scenario
    if not isinstance(scenario, Scenario):
        return load_scenario(scenario, sets, policy=policy)
    raw, name = _raw(scenario, sets, policy)
    return build(raw, name=name)


def simulate(scenario: Any = None, *, sets: Sequence[str] = (), policy: str | None = None,
             engine: str = "auto", out: str | os.PathLike[str] | None = None,
             keep_trace: bool = True, precision: float | None = None,
             monitor: Any = None) -> Simulation:
    """Run the scenario on the model: ``engine`` auto (the fast path for fixed-order
    schedules, SimPy otherwise; SimPy when a trace is written, so files keep its event
    order), simpy or fast. ``out`` writes the trace (.parquet or .csv). With
    ``keep_trace=False`` nothing is held in memory: SimPy streams the trace to ``out``
    and computes the metrics online (any run length in flat memory). ``precision``
    (e.g. 0.005) runs until the 95% interval of the period is within that share of it,
    ``run.chunks`` being the cap (streamed: no trace is kept). ``monitor``: a long
    streamed run's estimate, progress and Ctrl-C handler (the CLI's ``LongRun``)."""
    from pipefill.sim.engine.choice import choose, run

    sc = resolve(scenario, sets, policy)
    path = Path(out) if out is not None else None
    if path is not None:  # the trace writer (pandas, pyarrow) loads only for a file
        from pipefill.traces.io import check_writable

        check_writable(path, "out", (".parquet", ".pq", ".csv"))
    if not keep_trace or precision is not None:
        metrics = run(sc, engine, path, _precision(precision), monitor)
        return Simulation(sc, metrics["engine"], metrics, None, path)
    used = choose(sc, engine, writes_trace=path is not None)
    trace = _trace(sc, used)
    if path is not None:
        from pipefill.traces.io import write_trace

        write_trace(trace, path)
    from pipefill.traces.metrics import compute_metrics

    return Simulation(sc, used, {**compute_metrics(trace), "engine": used}, trace, path)


def _precision(rel: float | None) -> Any:
    if rel is None:
        return None
    from pipefill.sim.errors import ScenarioError
    from pipefill.sim.precision import Precision

    if not 0.0 < rel < 1.0:
        raise ScenarioError("precision", f"must be > 0 and < 1 (got {rel:g})")
    return Precision(rel)


def _trace(sc: Scenario, engine: str) -> Any:
    if engine == "fast":
        from pipefill.sim.fast.path import fast_trace

        return fast_trace(sc)
    from pipefill.sim.engine.core import simulate as simpy

    return simpy(sc)


def sweep(grid: Mapping[str, Sequence[Any]] | Sequence[str], scenario: Any = None, *,
          sets: Sequence[str] = (), policy: str | None = None, workers: int = 1,
          scheduler: str | None = None, out: str | os.PathLike[str] | None = None,
          resume: bool = False, per_task: int | None = None, engine: str = "auto",
          task_timeout_s: float = 3600.0, precision: float | None = None,
          progress: Callable[[int, int], None] | None = None,
          cost_progress: Callable[[float, float], None] | None = None,
          planned: Callable[..., None] | None = None) -> SweepResult:
    """A what-if grid: ``grid`` maps dotted fields to their values
    (``{"policy.d_in": [1, 2], "policy.d_out": [1, 2]}``) or is a list of ``--grid``
    strings (``"policy.d_in=1,2"``); the cartesian product runs on ``workers`` processes
    (``scheduler="local"``: a Dask LocalCluster; ``"tcp://HOST:PORT"``: an existing
    one). ``out`` streams finished tasks to ``OUT.parts/`` and writes the table.
    ``precision``: each point runs until its period's 95% interval is within that share
    of it (``run.chunks`` the cap; ``period_ci_ms``, ``converged`` columns say how).
    ``progress(done, total)`` counts points, ``cost_progress`` the estimated work, and
    ``planned(points, store)`` is told the plan before any point runs (a long grid's
    notice). Ctrl-C raises ``SweepInterrupted`` (finished points kept in ``out``)."""
    from pipefill.sim.sweep.executors import ExecSpec
    from pipefill.sim.sweep.grid import Axis, parse_axis
    from pipefill.sim.sweep.run import SweepRequest, run_sweep

    raw, name = _raw(scenario, (), None)
    axes = ([Axis(k, tuple(v)) for k, v in grid.items()] if isinstance(grid, Mapping)
            else [parse_axis(g) for g in grid])
    from pipefill.sim.scenario.load import with_policy

    path = Path(out) if out is not None else None
    req = SweepRequest(raw, name, axes, with_policy(policy, sets),
                       ExecSpec(scheduler, workers, task_timeout_s), path, resume, per_task,
                       engine, precision)
    _precision(precision)
    done = run_sweep(req, progress, cost_progress, planned)
    return SweepResult(name, [a.field for a in axes], done.table, done.ran, done.reused,
                       done.where, path)


def bound(scenario: Any = None, *, sets: Sequence[str] = (),
          policy: str | None = None) -> Bound:
    """The analytic steady-state period: critical cycle, serial sum, per-stage busy
    time, sensitivity of the period to each phase and where cutting it stops paying."""
    from pipefill.sim.bound.analysis import compute_bound

    return compute_bound(resolve(scenario, sets, policy))


def study(name_or_path: str | os.PathLike[str] | StudySpec, scenario: Any = None, *,
          sets: Sequence[str] = (), engine: str = "auto", workers: int = 1,
          explain: bool = True, replay: bool = False, options: ReplayOptions | None = None,
          progress: Callable[[int, int], None] | None = None) -> StudyResult:
    """One of the brief's experiments on the scenario: ``fill``, ``coupling``,
    ``sessions``, ``stream-batch``, a study file (.toml) or a :class:`StudySpec`. Runs
    its points through the sweep runner and returns every point, the verdict
    (``.verdict``) and ``.to_json()``. ``sets`` apply to the scenario before the study's
    own overrides. ``explain``: run ``explain`` on the key points' simulated traces
    (``.explained``). ``replay``: also run the key points short on the threads executor
    (``options``: device, kernels) beside their prediction (``.measured``)."""
    from pipefill.sim.study.load import load_study
    from pipefill.sim.study.run import StudyRun, run_study
    from pipefill.sim.study.spec import StudySpec

    spec = (name_or_path if isinstance(name_or_path, StudySpec)
            else load_study(os.fspath(name_or_path)))
    raw, name = _raw(scenario, (), None)
    result = run_study(spec, StudyRun(raw, name, list(sets), engine, workers, explain),
                       progress)
    if not replay:
        return result
    from pipefill.measure import measure_study

    return measure_study(result, options)
