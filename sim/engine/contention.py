"""Processor sharing on a device that several stages compute on at once.

A compute brings its *solo* duration (what it takes alone: the cost table's value) as
work. While ``n`` computes run on the device each advances at ``rate_at(n)`` ms of solo
work per ms (:class:`pipefill.sim.scenario.devices.DeviceSpec`); a compute ends when its work is
done. Every arrival or departure changes ``n`` for all of them, so the device keeps the
remaining work of each and re-arms one timer for the earliest finish.

Invariants: a compute alone takes exactly its solo duration; with rates <= 1 it never
finishes earlier than that; the total solo work done per ms is ``n * rate_at(n)``.
The result is deterministic: ties finish together, in arrival order.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy

from pipefill.sim.scenario.devices import DeviceSpec
from pipefill.sim.scenario.model import Scenario

#: remaining work (ms) below which a compute counts as finished (float round-off)
EPS_MS = 1e-9


@dataclass
class _Job:
    remaining: float
    done: simpy.Event


class SharedDevice:
    """One device's processor-sharing state inside a SimPy environment."""

    def __init__(self, env: simpy.Environment, spec: DeviceSpec) -> None:
        self.env, self.spec = env, spec
        self.jobs: list[_Job] = []
        self._last = float(env.now)
        self._armed = 0  # generation of the live timer; older timers are ignored

    def work(self, solo_ms: float) -> Generator[simpy.Event, Any, None]:
        """Run ``solo_ms`` of work on the device; returns when it is done."""
        if solo_ms <= 0:
            yield self.env.timeout(0)  # same event order as a device of its own
            return
        self._advance()
        job = _Job(float(solo_ms), self.env.event())
        self.jobs.append(job)
        self._arm()
        yield job.done

    def _advance(self) -> None:
        now = float(self.env.now)
        step = (now - self._last) * self.spec.rate_at(len(self.jobs))
        for job in self.jobs:
            job.remaining -= step
        self._last = now

    def _arm(self) -> None:
        self._armed += 1
        if not self.jobs:
            return
        first = min(self.jobs, key=lambda j: j.remaining)
        delay = max(0.0, first.remaining) / self.spec.rate_at(len(self.jobs))
        timer = self.env.timeout(delay)
        generation = self._armed
        timer.callbacks.append(lambda _ev: self._fire(generation, first))

    def _fire(self, generation: int, first: _Job) -> None:
        if generation != self._armed:
            return
        self._advance()
        done = [j for j in self.jobs if j is first or j.remaining <= EPS_MS]
        self.jobs = [j for j in self.jobs if not any(j is d for d in done)]
        for job in done:
            job.done.succeed()
        self._arm()


class DeviceModel:
    """The shared devices of one run: ``work(stage, solo_ms)`` is the compute hook.

    Stages on a device of their own never enter it (a plain timeout, as before).
    """

    def __init__(self, env: simpy.Environment, sc: Scenario) -> None:
        self.env = env
        shared = sc.shared_devices()
        self.devices = {d: SharedDevice(env, sc.placement.spec(d)) for d in shared}
        self.of = {s: d for d, stages in shared.items() for s in stages}
        #: stages whose dispatch gaps are work on their shared device (a CPU core)
        self.hosted = {s for s, d in self.of.items() if self.devices[d].spec.hosts_dispatch}

    def work(self, stage: str, solo_ms: float) -> Generator[simpy.Event, Any, None]:
        dev = self.of.get(stage)
        if dev is None:
            yield self.env.timeout(solo_ms)
            return
        yield from self.devices[dev].work(solo_ms)
