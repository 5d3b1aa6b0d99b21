"""Kernel families: ``--kernels`` -> a builder of per-stage kernels (the registry).

A family is built once per run from a :class:`KernelSetup`; ``for_stage`` gives each
stage its own :class:`Kernels` (its own buffers and state), whose ``run(action)``
executes one ``Compute`` and returns its output. Kernels are keyed by phase inside a
family, never by action type: the executor hands every ``Compute`` to ``run``.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipefill.exec.errors import ExecConfigError, InjectedFault
from pipefill.exec.kernels.calibrated import (
    CalibratedKernels,
    Calibration,
    in_stage_thread,
    load_or_measure,
)
from pipefill.exec.kernels.model import ModelBundle, ModelKernels, warm_up
from pipefill.exec.kernels.nn import MODEL_SIZES
from pipefill.exec.kernels.spin import SpinKernels, measure_spin
from pipefill.exec.threads.runtime import Runtime
from pipefill.sim.program.actions import Compute
from pipefill.sim.scenario.costs import CostTable
from pipefill.sim.scenario.model import Scenario


class Kernels(Protocol):
    def run(self, action: Compute) -> Any: ...


def prepare(kernels: Any) -> None:
    """Run a family's per-thread warm-up (``prepare`` or ``warm_up``) if it has one,
    looking through wrappers (fault injection, tracking, mesh sync) via ``inner``."""
    while kernels is not None:
        hook = getattr(kernels, "prepare", None) or getattr(kernels, "warm_up", None)
        if hook is not None:
            hook()
            return
        kernels = getattr(kernels, "inner", None)


@dataclass(frozen=True)
class KernelSetup:
    """What a family needs: the scenario, its cost table, the runtime and options;
    ``cancel`` is set when the run aborts (long kernels poll it)."""

    scenario: Scenario
    costs: CostTable
    runtime: Runtime
    model_size: str = "small"
    calibration_path: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    recalibrate: bool = False
    recheck: bool = True


def _stage_seed(setup: KernelSetup, stage: str) -> int:
    return setup.scenario.run.seed * 7919 + setup.runtime.stages.index(stage)


class CalibratedFamily:
    """Matmul loops sized from the cost table (see :mod:`pipefill.exec.kernels.calibrated`)."""

    def __init__(self, setup: KernelSetup) -> None:
        self.setup = setup
        self.cal, use = load_or_measure(setup.runtime, setup.calibration_path,
                                        recalibrate=setup.recalibrate, recheck=setup.recheck)
        self.info: dict[str, Any] = {"kernels": "calibrated", "matmul_n": self.cal.n,
                                     "iter_ms": self.cal.iter_ms, "dtype": self.cal.dtype,
                                     "calibration_cached": use.cached,
                                     "calibration": asdict(use)}

    def for_stage(self, stage: str) -> CalibratedKernels:
        kernels = CalibratedKernels(self.setup.costs, self.cal, self.setup.runtime,
                                    _stage_seed(self.setup, stage), self.setup.cancel)
        in_stage_thread(self.setup.runtime, kernels.warm_up, stage)
        return kernels


class ModelFamily:
    """Small DiT + conv VAE shared by all stages (see :mod:`pipefill.exec.kernels.model`)."""

    def __init__(self, setup: KernelSetup) -> None:
        size = MODEL_SIZES.get(setup.model_size)
        if size is None:
            raise ExecConfigError("--model-size", f"unknown size {setup.model_size!r} "
                                  f"(allowed: {', '.join(MODEL_SIZES)})")
        self.setup = setup
        self.bundle = ModelBundle(size, setup.runtime, setup.scenario.run.seed)
        in_stage_thread(setup.runtime, lambda: warm_up(self.bundle))
        self._cal: Calibration | None = None
        self.info: dict[str, Any] = {"kernels": "model", "model_size": setup.model_size,
                                     "parameters": self.bundle.parameters(),
                                     "dtype": str(self.bundle.dtype).removeprefix("torch.")}

    def _fallback(self, stage: str) -> CalibratedKernels:
        if self._cal is None:
            self._cal, _ = load_or_measure(self.setup.runtime, self.setup.calibration_path,
                                           recalibrate=self.setup.recalibrate,
                                           recheck=self.setup.recheck)
        return CalibratedKernels(self.setup.costs, self._cal, self.setup.runtime,
                                 _stage_seed(self.setup, stage), self.setup.cancel)

    def for_stage(self, stage: str) -> ModelKernels:
        return ModelKernels(self.bundle, self.setup.scenario.steps,
                            self.setup.scenario.run.seed, lambda: self._fallback(stage))


class SpinFamily:
    """Clock-spin kernels sized from the cost table (CUDA; :mod:`pipefill.exec.kernels.spin`)."""

    def __init__(self, setup: KernelSetup) -> None:
        if setup.runtime.kind != "cuda":
            raise ExecConfigError("--kernels", "spin kernels need --device cuda "
                                  "(use calibrated on the CPU)")
        self.setup = setup
        self.cal, use = load_or_measure(setup.runtime, setup.calibration_path,
                                        workload="spin", measure_fn=measure_spin,
                                        recalibrate=setup.recalibrate, recheck=setup.recheck,
                                        check_fn=lambda rt, _cal: measure_spin(rt).iter_ms)
        self.info: dict[str, Any] = {"kernels": "spin", "ms_per_cycle_block": self.cal.iter_ms,
                                     "cycle_block": self.cal.n, "calibration_cached": use.cached,
                                     "calibration": asdict(use)}

    def for_stage(self, stage: str) -> SpinKernels:
        kernels = SpinKernels(self.setup.costs, self.cal, self.setup.cancel)
        in_stage_thread(self.setup.runtime, kernels.warm_up, stage)
        return kernels


Family = CalibratedFamily | ModelFamily | SpinFamily

#: ``--kernels`` -> family
KERNELS: dict[str, type[CalibratedFamily] | type[ModelFamily] | type[SpinFamily]] = {
    "calibrated": CalibratedFamily,
    "model": ModelFamily,
    "spin": SpinFamily,
}


def make_family(name: str, setup: KernelSetup) -> Family:
    cls = KERNELS.get(name)
    if cls is None:
        raise ExecConfigError("--kernels", f"unknown kernels {name!r} "
                              f"(allowed: {', '.join(KERNELS)})")
    return cls(setup)


@dataclass(frozen=True)
class Fault:
    """Make the kernel of ``phase`` for ``chunk`` raise (optionally on one stage only)."""

    phase: str
    chunk: int
    stage: str | None = None

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``PHASE:CHUNK`` or ``STAGE:PHASE:CHUNK``."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[-1].strip().isdigit():
            raise ExecConfigError("--inject", f"{text!r} is not PHASE:CHUNK or "
                                  "STAGE:PHASE:CHUNK (e.g. denoise:3)")
        stage = parts[0] if len(parts) == 3 else None
        return cls(parts[-2], int(parts[-1]), stage)


class FaultyKernels:
    """Wraps a stage's kernels; raises :class:`InjectedFault` on the chosen call."""

    def __init__(self, inner: Kernels, fault: Fault) -> None:
        self.inner, self.fault = inner, fault

    def run(self, action: Compute) -> Any:
        if action.phase == self.fault.phase and action.tag.chunk == self.fault.chunk:
            raise InjectedFault(f"injected fault in {action.phase} of chunk {action.tag.chunk}")
        return self.inner.run(action)
