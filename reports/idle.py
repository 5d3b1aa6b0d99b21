"""The idle-causes figure: each stage's window split into busy time and the causes of
its idle time (``pipefill explain``), one stacked bar per stage, with the verdict.

The data is :func:`pipefill.traces.explain.explain_trace` of each run (the facts of its
policy come from the caller: the report command passes the simulator's; without them,
what the trace's metadata says). A run that cannot be explained (no emits, one stage)
gets its reason on the panel instead of bars.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from pipefill.reports.inputs import Run
from pipefill.reports.style import new_figure, no_data
from pipefill.traces.explain import explain_trace
from pipefill.traces.facts import PolicyFacts, facts_from_meta
from pipefill.traces.schema import Trace, TraceError
from pipefill.traces.waits import CAUSES

#: busy time and every cause -> bar colour (one registry for the figure and its legend)
CAUSE_COLOURS: dict[str, str] = {
    "busy": "#55A868", "starved": "#4C72B0", "blocked": "#C44E52", "dependency": "#8172B2",
    "source": "#CCB974", "fill_drain": "#64B5CD", "unattributed": "#BBBBBB",
}
Facts = Callable[[Trace], PolicyFacts]


@dataclass(frozen=True)
class IdlePanel:
    """One run: ``stages`` and, per part (busy + every cause), each stage's share of the
    window; ``verdict`` and ``lever`` in words; ``reason`` when it has no attribution."""

    label: str
    stages: list[str] = field(default_factory=list)
    shares: dict[str, list[float]] = field(default_factory=dict)
    verdict: str = ""
    lever: str = ""
    reason: str = ""


def idle_data(runs: list[Run], facts: Facts | None = None) -> list[IdlePanel]:
    out = []
    for run in runs:
        tr = run.trace
        try:
            e = explain_trace(tr, facts(tr) if facts else facts_from_meta(tr.meta))
        except TraceError as exc:
            out.append(IdlePanel(run.label, reason=str(exc)))
            continue
        shares = {"busy": [s.busy_ms / s.window_ms for s in e.stages]}
        for cause in CAUSES:
            shares[cause] = [s.causes[cause] / s.window_ms for s in e.stages]
        out.append(IdlePanel(run.label, [s.stage for s in e.stages], shares, e.verdict.text,
                             e.verdict.lever))
    return out


def draw_idle(panels: list[IdlePanel]) -> Figure:
    height = sum(1.6 + 0.35 * len(p.stages) for p in panels)
    fig = new_figure(10.0, max(2.4, height))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, p in zip(axes, panels, strict=True):
        if p.reason:
            no_data(ax, p.reason)
            ax.set_title(p.label, fontsize=9, loc="left")
            continue
        left = [0.0] * len(p.stages)
        for part, values in p.shares.items():
            if not any(v > 0 for v in values):
                continue
            ax.barh(p.stages, values, left=left, color=CAUSE_COLOURS[part],
                    label=part.replace("_", "/"), height=0.6)
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_xlabel("share of the steady window")
        words = textwrap.fill(f"{p.label}: {p.verdict}; lever: {p.lever}", 120)
        ax.set_title(words, fontsize=8, loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return fig
