"""Queue depth over time for each queue (with its capacity), and bytes in flight.

Depths are the trace's counter samples drawn as steps (a value holds until the next
sample) over the whole run, so nothing is downsampled. A queue's capacity comes from
the queue specs in the trace's metadata (every policy's queues); a trace written before
they were recorded falls back to the policy field that sets it (:data:`CAPACITY_FIELDS`);
without either no line is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipefill.reports.inputs import Run
from pipefill.reports.series import cut_times
from pipefill.reports.style import MARK_STYLES, new_figure, no_data, role_style

#: queue counter -> the policy parameter that is its capacity (DESIGN: D_in, D_out), for
#: traces whose metadata has no ``queues``
CAPACITY_FIELDS: dict[str, str] = {"q_in": "d_in", "q_out": "d_out"}
#: counters that are not queue depths, drawn in their own panel with a unit scale
OTHER_COUNTERS: dict[str, tuple[str, float]] = {"bytes_in_flight": ("MiB in flight", 2**20)}


@dataclass(frozen=True)
class CounterSeries:
    """One counter of one run: sample times and values as in the trace."""

    name: str
    times_ms: np.ndarray
    values: np.ndarray
    capacity: float | None = None
    mean: float | None = None
    capacity_label: str = "capacity"


@dataclass
class QueueData:
    """One run's counters by name, and the times of its hard cuts (drawn on every panel)."""

    label: str
    role: str
    counters: dict[str, CounterSeries] = field(default_factory=dict)
    cuts_ms: list[float] = field(default_factory=list)


def _capacity(run: Run, name: str) -> tuple[float | None, str]:
    """(capacity, legend label) of queue ``name``: from the metadata's queue specs, else
    from the policy field that sets it."""
    for spec in run.trace.meta.get("queues") or []:
        if isinstance(spec, dict) and spec.get("name") == name:
            cap = spec.get("capacity")
            return (float(cap), "capacity") if isinstance(cap, int | float) else (None, "")
    key = CAPACITY_FIELDS.get(name)
    value = run.trace.meta.get("policy", {}).get(key) if key else None
    if isinstance(value, int | float):
        return float(value), f"capacity {key}"
    return None, ""


def queue_data(runs: list[Run]) -> list[QueueData]:
    out = []
    for run in runs:
        data = QueueData(run.label, run.role, cuts_ms=cut_times(run.trace))
        counters = run.trace.events[run.trace.events["kind"] == "counter"]
        means = run.metrics.get("queues", {})
        for name, grp in counters.groupby("name", sort=True):
            grp = grp.sort_values("start_ms", kind="stable")
            capacity, label = _capacity(run, str(name))
            data.counters[str(name)] = CounterSeries(
                str(name), grp["start_ms"].to_numpy(), grp["value"].to_numpy(),
                capacity, means.get(str(name), {}).get("mean"), label)
        out.append(data)
    return out


def _panel_names(data: list[QueueData]) -> list[str]:
    names = sorted({n for d in data for n in d.counters})
    return [n for n in names if n not in OTHER_COUNTERS] + [n for n in names
                                                             if n in OTHER_COUNTERS]


def _panel(ax: Axes, d: QueueData, c: CounterSeries) -> None:
    unit, scale = OTHER_COUNTERS.get(c.name, ("items held", 1.0))
    style = role_style(d.role)
    mean = "" if c.mean is None else f", window mean {c.mean / scale:.2f}"
    ax.step(c.times_ms, c.values / scale, where="post", color=style["color"], linewidth=0.9,
            label=f"{d.label}{mean}")
    if c.capacity is not None:
        ax.axhline(c.capacity, color="black", linestyle="--", linewidth=1.1,
                   label=f"{c.capacity_label} = {c.capacity:g}")
    for i, t in enumerate(d.cuts_ms):
        ax.axvline(t, label="hard cut" if i == 0 else None, **MARK_STYLES["hard_cut"])
    ax.set_ylabel(f"{c.name}\n({unit})")
    ax.set_ylim(0, 1.3 * max(float(np.max(c.values / scale)), c.capacity or 0.0, 1e-9))
    ax.grid(color="#E6E6E6", linewidth=0.6)
    ax.legend(fontsize=7.5, loc="upper right", ncol=3)


def draw_queues(data: list[QueueData]) -> Figure:
    """One panel per counter and run (a pair stacks predicted over measured per counter)."""
    panels = [(d, d.counters[n]) for n in _panel_names(data) for d in data if n in d.counters]
    fig = new_figure(12, 1.0 + 1.8 * max(1, len(panels)))
    axes = fig.subplots(max(1, len(panels)), 1, sharex=True, squeeze=False)[:, 0]
    if not panels:
        no_data(axes[0], "the trace has no counters")
        return fig
    for ax, (d, c) in zip(axes, panels, strict=True):
        _panel(ax, d, c)
    axes[0].set_title("Queue depth over time (whole run, every counter sample, drawn as steps)",
                      loc="left", fontsize=10)
    axes[-1].set_xlabel("time since run start (ms)")
    return fig
