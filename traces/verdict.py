"""One line per run: the domain brief's category for why the pipeline does not fill.

The *bottleneck* is the stage with the least idle time. When it (almost) never waits
on the pipeline (its idle time apart from its own unattributed host time is under
:data:`SATURATED`) the period is its work: the others' idle is ``stage imbalance`` (or nothing: the
pipeline is ``filled``). Otherwise the bottleneck itself waits, and the cause of its
idle time names the category: ``backpressure`` (blocked on a full queue),
``dependency`` (a context input, or stages that take turns), ``source-bound``,
``fill/drain bubbles``; a ``starved`` bottleneck is followed to the stage upstream and
that stage's own cause. The lever comes from the policy's own words when the trace
names it (:attr:`PolicyFacts.levers`), else from the generic ones here. When the
facts carry the analytic bound's critical cycle, the verdict says whether it agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipefill.traces.facts import PolicyFacts

if TYPE_CHECKING:
    from pipefill.traces.explain import StageIdle
    from pipefill.traces.idle import Evidence

#: idle share under which a stage counts as saturated
SATURATED = 0.05
#: idle share from which a non-bottleneck stage counts as imbalanced
IMBALANCED = 0.10
#: cause of the bottleneck's idle -> the brief's category
CATEGORY = {"blocked": "backpressure", "dependency": "dependency", "source": "source-bound",
            "fill_drain": "fill/drain bubbles", "unattributed": "unattributed"}
#: category -> the lever when the policy names none
GENERIC_LEVER = {
    "backpressure": "more slots in {target} (its capacity is what blocks)",
    "dependency": "loosen the dependency: let the next chunk start before this one's "
                  "output is back",
    "source-bound": "none in the schedule: the input arrives slower than the pipeline runs",
    "fill/drain bubbles": "more items in flight per batch",
    "unattributed": "record what each stage waits on (a wait lane, probe's stage.wait) "
                    "to tell",
}
#: the lever when the bottleneck records its waits and still idles outside them
HOST_TIME = ("host time outside the recorded waits and work (dispatch, Python, lock and "
             "GIL hand-offs): fewer, larger calls, or stages in processes, not threads")


@dataclass(frozen=True)
class Verdict:
    """``category`` (the brief's words), ``text`` (the one line), ``lever``, the
    ``bottleneck`` stage, and ``bound``/``agrees``: the bound's critical cycle in the
    same words and whether it names the same category (None: no bound)."""

    category: str
    text: str
    lever: str
    bottleneck: str
    bound: str = ""
    agrees: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category, "text": self.text, "lever": self.lever,
                "bottleneck": self.bottleneck,
                "bound": {"text": self.bound, "agrees": self.agrees} if self.bound else None}


def _lever(facts: PolicyFacts, category: str, target: str = "") -> str:
    for key in (f"{category}:{target}", category):
        if key in facts.levers:
            return facts.levers[key]
    return GENERIC_LEVER.get(category, "").format(target=target or "the queue")


def _top_phase(ev: Evidence, stage: str) -> str:
    comp = ev.compute.get(stage)
    if comp is None or not len(comp):
        return ""
    calls = comp.drop_duplicates(["name", "start_ms", "end_ms"])
    by = (calls["end_ms"] - calls["start_ms"]).groupby(calls["name"].astype(str)).sum()
    return f" ({by.idxmax()} is {by.max() / by.sum():.0%} of its work)"


def _saturated(stages: tuple[StageIdle, ...], b: StageIdle, facts: PolicyFacts,
               ev: Evidence) -> tuple[str, str, str]:
    others = [s for s in stages if s is not b and s.idle_share >= IMBALANCED]
    if not others:
        return ("filled", f"filled: every stage is busy at least {1 - IMBALANCED:.0%} of the "
                f"window; {b.stage} (idle {b.idle_share:.0%}) sets the period",
                f"no scheduling lever: speed up {b.stage}'s work{_top_phase(ev, b.stage)}")
    idle = ", ".join(f"{s.stage} idle {s.idle_share:.0%}" for s in others)
    text = (f"stage imbalance: {b.stage} is busy {1 - b.idle_share:.0%} of the window and "
            f"sets the period; {idle}")
    lever = facts.levers.get("stage imbalance") or \
        f"balance the stages: move work off {b.stage}{_top_phase(ev, b.stage)}"
    return "stage imbalance", text, lever


def _resolve(b: StageIdle, stages: tuple[StageIdle, ...]) -> tuple[str, str]:
    """The category and queue behind the bottleneck's largest idle part."""
    part = b.parts[0]
    if part.cause != "starved" or part.chain is None:
        return CATEGORY.get(part.cause, "unattributed"), part.target
    up = next((s for s in stages if s.stage == part.chain.upstream), None)
    if up is None or not up.parts:
        return "unattributed", part.target
    own = next((p for p in up.parts if p.cause != "starved"), None)
    if own is not None and own.share >= 0.25:
        return CATEGORY.get(own.cause, "unattributed"), own.target
    # the upstream stage is itself starved on the bottleneck: the two take turns
    return "dependency", part.target


def decide(stages: tuple[StageIdle, ...], facts: PolicyFacts, ev: Evidence) -> Verdict:
    """The verdict of a run (module docstring)."""
    b = min(stages, key=lambda s: s.idle_share)
    # a stage's unattributed idle is its own host time (dispatch, wake-ups): it waited on
    # nothing in the pipeline, so it does not keep the stage from being the limit
    waiting = (b.idle_ms - b.causes.get("unattributed", 0.0)) / b.window_ms \
        if b.window_ms > 0 else 0.0
    if waiting < SATURATED:
        category, text, lever = _saturated(stages, b, facts, ev)
    else:
        category, target = _resolve(b, stages)
        lever = HOST_TIME if category == "unattributed" and b.waits else \
            _lever(facts, category, target)
        text = f"{category}: {b.line()}"
    crit = facts.critical
    if crit is None:
        return Verdict(category, text, lever, b.stage)
    same = crit.category == category or {crit.category, category} <= {"filled",
                                                                       "stage imbalance"}
    words = f"bound: {crit.text or crit.category} ({'agrees' if same else 'differs'})"
    return Verdict(category, text, lever, b.stage, words, same)
