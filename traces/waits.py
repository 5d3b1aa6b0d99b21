"""The ``wait`` lane: what a stage waited on, and the cause of idle time it names.

A wait span (``kind = span``, ``lane = wait``, ``stage`` = the waiting stage) covers the
time a stage's program was blocked; its ``name`` says on what:

==================  ==========================================  ==============
name                the stage waited for                        cause
==================  ==========================================  ==============
``get:Q``           an item on queue Q (its input)              ``starved``
``slot:Q``          a free slot of queue Q (its output is full) ``blocked``
``input``           the source's input of the chunk             ``source``
``context:C``       the decoded context of chunk C (r0a)        ``dependency``
``fill:Q``          the first item of the next batch, on Q      ``fill_drain``
``drain:Q``         the last item of its batch to leave, on Q   ``fill_drain``
``A|B|...``         whichever of A, B comes first               by priority
``Q`` (bare)        queue Q, direction from the policy          get or slot
``change``          any change of the shared state (no reason)  ``unattributed``
==================  ==========================================  ==============

A program that can proceed in several ways (phase_pp's stage0: build or decode) waits
for whichever comes first; the span names every alternative and its cause is the first
of :data:`PRIORITY` among them: a missing context or input is what keeps the stage from
working ahead, and a stage both backpressured and starved waits on a full pipeline
downstream. The span's ``chunk`` is the chunk the wait is for (for ``context:C``, the
chunk whose build needs C's decode), or -1. Metrics never read this lane.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipefill.traces.facts import PolicyFacts
from pipefill.traces.schema import WAIT_LANE

#: causes of idle time, in report order
CAUSES = ("starved", "blocked", "dependency", "source", "fill_drain", "unattributed")
#: label prefix -> cause
KINDS = {"get": "starved", "slot": "blocked", "input": "source", "context": "dependency",
         "fill": "fill_drain", "drain": "fill_drain"}
#: the name of a wait for any state change that gives no reason
CHANGE = "change"
#: which alternative of a multi-way wait names its cause
PRIORITY = ("dependency", "source", "fill_drain", "blocked", "starved")


@dataclass(frozen=True)
class Cause:
    """One cause of idle time: ``cause`` (one of :data:`CAUSES`), ``target`` (the queue,
    or the context's chunk offset like ``k-1``), ``label`` (the wait's own words)."""

    cause: str
    target: str = ""
    label: str = ""

    def describe(self) -> str:
        t = self.target
        return {
            "starved": f"starved on {t}" if t else "starved",
            "blocked": f"blocked on {t} (full)" if t else "blocked (output full)",
            "dependency": f"dependency (the decode of chunk {t})" if t else "dependency",
            "source": "source (input not yet arrived)",
            "fill_drain": (f"fill/drain ({t})" if t.startswith("the run") else
                           f"fill/drain (batch boundary on {t})" if t else "fill/drain"),
            "unattributed": f"unattributed ({t})" if t else "unattributed",
        }[self.cause]


UNATTRIBUTED = Cause("unattributed", "", "")


def _offset(src: str, chunk: int) -> str:
    """``context:7`` for chunk 8 reads ``k-1``."""
    try:
        d = int(src) - chunk
    except ValueError:
        return src
    if chunk < 0:
        return src
    return "k" if d == 0 else f"k{d:+d}"


def _one(label: str, stage: str, chunk: int, facts: PolicyFacts) -> Cause:
    kind, sep, target = label.partition(":")
    if sep and kind in KINDS:
        if kind == "context":
            target = _offset(target, chunk)
        return Cause(KINDS[kind], target, label)
    if label == "input":
        return Cause("source", "", label)
    if label == CHANGE:  # a wait that did not say for what
        return Cause("unattributed", "any change", label)
    q = facts.queue(label)
    if q is not None:  # a bare queue name: the direction decides
        return Cause("blocked" if q.src == stage and q.dst != stage else "starved", label,
                     label)
    if label:
        return Cause("starved", label, label) if not sep else Cause("unattributed", label, label)
    return UNATTRIBUTED


def classify(label: str, stage: str, chunk: int, facts: PolicyFacts) -> Cause:
    """The cause a wait span's ``name`` gives (module table); ``stage`` waited."""
    options = [_one(part.strip(), stage, chunk, facts) for part in label.split("|")]
    for cause in PRIORITY:
        hit = next((o for o in options if o.cause == cause), None)
        if hit is not None:
            return hit
    return options[0] if options else UNATTRIBUTED


def wait_label(*parts: str) -> str:
    """The name of a wait on several alternatives (``slot:q_in|get:q_out``)."""
    return "|".join(p for p in parts if p)


def has_waits(lanes: Iterable[str]) -> bool:
    return any(str(x) == WAIT_LANE for x in lanes)
