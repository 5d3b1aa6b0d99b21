"""Fit the ``[transport]`` table to a trace's ``send`` spans (``comm`` lane).

:func:`fit_transport` fits latency and bandwidth to timed sends. :func:`fit_link` is
what ``calibrate`` runs: it also refuses to read untimed sends (every one of zero
length, as a probe's ``send(...)`` without ``duration_ms`` records) as a free link,
keeping the given latency and bandwidth and saying so, and it takes the message sizes
the sends carry (``value`` = bytes) when the trace's own transport gives none, so the
calibrated scenario counts the bytes in flight. Which stage sends which message comes
from the policy (:func:`send_roles`: its ``queue_role`` hook), never from stage names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from pipefill.sim.errors import error_from_validation
from pipefill.sim.policies.base import CONTROL, ENVELOPE, RESULT
from pipefill.sim.scenario.model import Scenario, Transport
from pipefill.traces.schema import Trace

#: bandwidth standing for "free" (a message of any size arrives in about no time)
FREE_LINK_GBPS = 1e6
#: the [transport] size a message of each role sets (the others keep the given sizes)
SIZE_OF_ROLE = {ENVELOPE: "envelope_bytes", RESULT: "result_bytes"}
#: stage -> what its messages carry (a policy's ``queue_role``; None: unknown)
Roles = Mapping[str, str | None]


@dataclass(frozen=True)
class LinkFit:
    """The calibrated ``[transport]`` ``table``; ``sends`` and ``timed`` count the send
    spans and those with a duration; ``sizes`` are the message sizes taken from the
    sends' bytes; ``warnings`` say what could not be fitted and why."""

    table: dict[str, Any]
    sends: int = 0
    timed: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _sends(trace: Trace) -> pd.DataFrame:
    sp = trace.spans
    return sp[(sp["name"] == "send") & (sp["lane"] == "comm")]


def _link(table: dict[str, Any]) -> Transport:
    try:
        return Transport.model_validate(table)
    except ValidationError as exc:
        raise error_from_validation(exc, "meta.transport") from None


def send_roles(sc: Scenario) -> dict[str, str | None]:
    """Sending stage -> what its messages carry (the policy's ``queue_role`` of the first
    queue it sends across stages)."""
    out: dict[str, str | None] = {}
    for q in sc.policy.queues(sc):
        if q.transport and q.src != q.dst:
            out.setdefault(q.src, sc.policy.queue_role(sc, q.name))
    return out


def fit_link(trace: Trace, given: dict[str, Any], roles: Roles | None = None) -> LinkFit:
    """The ``[transport]`` table for ``trace`` (module docstring); ``given`` is the
    trace's own (the scenario defaults fill what it leaves out); ``roles``: what each
    sending stage's messages carry (:func:`send_roles`; unknown: sized as results).
    Sends of zero length in a measured trace are untimed: left out of the fit, with a
    warning."""
    out = {k: v for k, v in given.items() if v is not None}
    roles = roles or {}
    sends = _sends(trace)
    sizes = _sizes(sends, _link(out), roles)
    out.update(sizes)
    timed = sends[sends["end_ms"] > sends["start_ms"]]
    if trace.meta.get("source") == "sim":  # a simulated zero-length send is a free link
        timed = sends
    untimed = len(sends) - len(timed)
    warnings = []
    if untimed and len(timed):
        warnings.append(f"transport: {untimed} of the trace's {len(sends)} sends are untimed "
                        f"(zero length); latency and bandwidth are fitted to the other "
                        f"{len(timed)}")
    elif untimed:
        link = _link(out)
        where = "the trace's" if "latency_ms" in out else "the defaults"
        warnings.append(
            f"transport: none of the trace's {len(sends)} sends is timed (all of zero "
            f"length), so latency and bandwidth are not fitted: kept at {where} "
            f"{link.latency_ms:g} ms and {link.bandwidth_gbps:g} GB/s, not a free link. "
            "Time the transfers (send(..., duration_ms=...), or a span on the comm lane) "
            "to fit them")
    if len(timed):
        out = _fitted(timed, out, roles)
    return LinkFit(out, len(sends), len(timed), sizes, warnings)


def _sizes(sends: pd.DataFrame, link: Transport, roles: Roles) -> dict[str, int]:
    """``envelope_bytes``/``result_bytes`` from the median bytes of the sends of the
    stages that send envelopes/results, for each the given transport leaves at 0."""
    given = {"envelope_bytes": link.envelope_size, "result_bytes": link.result_size}
    out = {}
    for role, key in SIZE_OF_ROLE.items():
        stages = [st for st, r in roles.items() if r == role]
        nbytes = sends.loc[sends["stage"].isin(stages), "value"].dropna()
        if given[key] == 0 and len(nbytes) and float(nbytes.median()) > 0:
            out[key] = round(float(nbytes.median()))
    return out


def fit_transport(trace: Trace, given: dict[str, Any],
                  roles: Roles | None = None) -> dict[str, Any]:
    """Latency and bandwidth fitted to every ``send`` span of ``trace`` (see
    :func:`_fitted`); ``given`` is kept when there is none."""
    out = {k: v for k, v in given.items() if v is not None}
    sends = _sends(trace)
    return out if sends.empty else _fitted(sends, out, roles or {})


def _fitted(sends: pd.DataFrame, given: dict[str, Any], roles: Roles) -> dict[str, Any]:
    """Latency and bandwidth from ``sends``: a least-squares line of time vs bytes.

    Bytes come from each span's ``value`` (the executor records them) or else from the
    given size of what the sending stage's messages carry (``roles``: envelopes,
    control tokens of no payload, else the result size). A line through negative
    latency is refitted through the origin; time that does not grow with size (an
    in-process handoff) is a free link. With one message size the split is not
    identifiable: the given bandwidth is kept when it explains the times, else all the
    time is put on the bandwidth.
    """
    out = dict(given)
    link = _link(out)
    sizes = {ENVELOPE: link.envelope_size, CONTROL: 0}
    guess = np.array([float(sizes.get(str(roles.get(st)), link.result_size))
                      for st in sends["stage"]])
    nbytes = sends["value"].to_numpy(dtype=float)
    nbytes = np.where(np.isnan(nbytes), guess, nbytes)
    dur = (sends["end_ms"] - sends["start_ms"]).to_numpy(dtype=float)
    latency, ms_per_byte = _line(nbytes, dur, 1.0 / (link.bandwidth_gbps * 1e6))
    out["latency_ms"] = round(latency, 6)
    out["bandwidth_gbps"] = round(1.0 / (ms_per_byte * 1e6), 6) if ms_per_byte > 0 \
        else FREE_LINK_GBPS
    return out


def _line(x: np.ndarray, y: np.ndarray, given_slope: float) -> tuple[float, float]:
    """(intercept >= 0, slope >= 0) of y ~ x; slope 0 means "no cost per byte"."""
    if len(np.unique(x)) >= 2:
        slope, intercept = (float(v) for v in np.polyfit(x, y, 1))
        if slope <= 0:
            return max(0.0, float(np.median(y))), 0.0
        if intercept < 0:
            return 0.0, float((x * y).sum() / (x * x).sum())
        return intercept, slope
    size, median = float(x[0]), float(np.median(y))
    if median >= size * given_slope:
        return median - size * given_slope, given_slope
    return 0.0, (median / size if size > 0 else 0.0)
