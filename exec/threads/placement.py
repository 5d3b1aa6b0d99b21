"""Where stage threads run on the host: the scenario's devices mapped to CPU cores.

A CPU replay of a scenario that names devices (``[placement]`` / ``[devices]``) pins the
thread of every stage to its device's cores, so two stages on one device time-share
its core(s), as the contention model assumes. A device without ``cores`` gets one core
of its own, in order of first appearance, cycling over the cores this process may use.
A scenario that names no device is not pinned (as before).

On CUDA every stage runs on the one current GPU (a stream each): placement then only
decides the model's contention; separate GPUs per device are not implemented.
"""

from __future__ import annotations

import os

from pipefill.exec.errors import ExecConfigError
from pipefill.sim.scenario.model import Scenario


def available_cores() -> tuple[int, ...]:
    """The cores this process may run on (all of them where affinity is unsupported)."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is None:
        return tuple(range(os.cpu_count() or 1))
    return tuple(sorted(getter(0)))


def cpu_pins(sc: Scenario, cores: tuple[int, ...] | None = None) -> dict[str, tuple[int, ...]]:
    """Stage -> the cores its thread is pinned to; empty when the scenario names no device."""
    if not sc.placement.explicit:
        return {}
    cores = cores if cores is not None else available_cores()
    pins: dict[str, tuple[int, ...]] = {}
    auto = 0
    for dev, stages in sc.placement.groups(sc.stage_names).items():
        spec = sc.placement.spec(dev)
        if spec.cores is not None:
            missing = sorted(set(spec.cores) - set(cores))
            if missing:
                raise ExecConfigError(f"devices.{dev}.cores", f"core {missing[0]} is not "
                                      f"available here (allowed: {', '.join(map(str, cores))})")
            mine = tuple(spec.cores)
        else:
            mine = (cores[auto % len(cores)],)
            auto += 1
        pins.update(dict.fromkeys(stages, mine))
    return pins


def pin_current_thread(cores: tuple[int, ...]) -> None:
    """Pin the calling thread (Linux: pid 0 is the calling thread) to ``cores``."""
    setter = getattr(os, "sched_setaffinity", None)
    if setter is None:
        raise ExecConfigError("placement", "thread affinity is not supported on this OS")
    setter(0, set(cores))
