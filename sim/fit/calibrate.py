"""Fit a scenario to a measured trace: per-phase cost distributions and transport.

``calibrate_trace(trace)`` reads the trace's own scenario from its metadata (run,
policy, costs, transport), replaces every phase it measured by a distribution fitted
to the steady-state spans (chunks after the warm-up) and the link by latency and
bandwidth fitted to the ``send`` spans, and validates the result as a scenario, so
``simulate`` accepts it as is. Pattern and drift are not fitted: a phase's measured
samples become one stationary distribution.

Stages that share a device (``[placement]``): their spans are first turned into solo
durations and the device's contention rates are fitted (:mod:`pipefill.sim.fit.contention`);
the fitted rates, with their sample counts, go into ``[devices.<name>]`` and the header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipefill.sim.errors import ScenarioError
from pipefill.sim.fit.contention import DeviceFit, solo_durations
from pipefill.sim.fit.dispatch import DispatchFit, fit_dispatch
from pipefill.sim.fit.robust import within_mads
from pipefill.sim.fit.transport import LinkFit, fit_link, send_roles
from pipefill.sim.scenario.costs import PHASES, CostSpec
from pipefill.sim.scenario.load import (
    apply_overrides,
    build_placement,
    build_scenario,
    check_window,
)
from pipefill.sim.scenario.model import RunConfig, Scenario
from pipefill.traces.schema import Trace, TraceError
from pipefill.traces.toml_writer import to_toml

DISTS = ("auto", "constant", "normal", "lognormal", "empirical")
#: relative spread below which a phase is fitted as a constant
CONSTANT_CV = 0.005
#: fewest steady-state samples before the warm-up chunks are used too
MIN_SAMPLES = 3
#: a sample further than this many robust deviations from the median is an outlier...
OUTLIER_MADS = 5.0
#: ...unless it is within this fraction of the median (near-constant phases)
OUTLIER_FLOOR = 0.05
#: warm-up chunks of a run table calibrate makes up (RunConfig's default)
DEFAULT_WARMUP = int(RunConfig.model_fields["warmup"].default)


@dataclass(frozen=True)
class PhaseFit:
    """The fitted ``[costs.<phase>]`` table and the samples behind it (0 = kept as
    given); ``outliers`` of them were left out of a parametric fit."""

    phase: str
    spec: dict[str, Any]
    samples: int
    mean_ms: float
    cv: float
    outliers: int = 0


@dataclass(frozen=True)
class Calibrated:
    """A calibrated scenario: its raw tables, the validated scenario and the fits."""

    raw: dict[str, Any]
    scenario: Scenario
    fits: list[PhaseFit]
    transport: dict[str, Any]
    devices: list[DeviceFit] = field(default_factory=list)
    dispatch: list[DispatchFit] = field(default_factory=list)
    link: LinkFit | None = None

    def warnings(self) -> list[str]:
        """What the fit could not do well: untimed sends, phases seen too few times."""
        few = [f"costs.{f.phase}: fitted from only {f.samples} span"
               f"{'s' * (f.samples != 1)} (fewer than {MIN_SAMPLES}): its spread and shape "
               "are guesses; record more chunks" for f in self.fits if 0 < f.samples < MIN_SAMPLES]
        return [*(self.link.warnings if self.link else []), *few]

    def notes(self) -> list[str]:
        """Comment lines: the warnings, then what was fitted from how many samples."""
        lines = [f"WARNING {w}" for w in self.warnings()]
        lines += [f"costs.{f.phase}: {f.spec.get('dist')} mean {f.mean_ms:.4g} ms, cv "
                  f"{f.cv:.3g} from {f.samples} spans ({f.outliers} outliers left out)"
                  for f in self.fits if f.samples]
        if self.link is not None and self.link.sends:
            lines.append(f"transport: from {self.link.timed} timed of {self.link.sends} sends"
                         + "".join(f"; {k} = {v} from the sends' bytes"
                                   for k, v in self.link.sizes.items()))
        lines.extend(d.describe() for d in self.dispatch)
        for dev in self.devices:
            lines.append(dev.describe())
            lines.extend(f"  {note}" for note in dev.notes)
        return lines

    def toml(self, header: str = "") -> str:
        text = "\n".join([header, *self.notes()]) if header else "\n".join(self.notes())
        return to_toml(self.raw, header=text)

    def to_json(self) -> dict[str, Any]:
        """The fitted tables and how each was fitted (``pipefill calibrate --json``)."""
        return {"costs": self.raw["costs"], "transport": self.transport,
                "samples": {f.phase: f.samples for f in self.fits},
                "outliers": {f.phase: f.outliers for f in self.fits},
                "devices": {d.device: {"rates": d.rates, "fitted": list(d.fitted),
                                       "overlapped": d.overlapped,
                                       "solo_calls": d.solo_calls} for d in self.devices},
                "rates": {d: t.get("rate") for d, t in (self.raw.get("devices") or {}).items()},
                "notes": self.notes(), "warnings": self.warnings()}


def _loglik_normal(x: np.ndarray, mean: float, sd: float) -> float:
    return float(np.sum(-0.5 * ((x - mean) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))))


def _loglik_lognormal(x: np.ndarray, mean: float, cv: float) -> float:
    s2 = np.log1p(cv**2)
    mu, s = np.log(mean) - s2 / 2, np.sqrt(s2)
    lx = np.log(x)
    return float(np.sum(-0.5 * ((lx - mu) / s) ** 2 - lx - np.log(s * np.sqrt(2 * np.pi))))


def choose_dist(x: np.ndarray) -> str:
    """constant for (almost) no spread, else the likelier of normal and lognormal.

    One sample can only be a constant. With fewer than MIN_SAMPLES the shape cannot be
    told apart, so any spread gives ``normal`` (moment fit), never ``constant``.
    """
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    if len(x) < 2 or mean <= 0 or sd / mean < CONSTANT_CV:
        return "constant"
    if len(x) < MIN_SAMPLES or (x <= 0).any():
        return "normal"
    lognormal = _loglik_lognormal(x, mean, sd / mean)
    return "lognormal" if lognormal >= _loglik_normal(x, mean, sd) else "normal"


def trim_outliers(x: np.ndarray) -> np.ndarray:
    """Drop samples further than OUTLIER_MADS robust deviations (at least OUTLIER_FLOOR
    of the median) from the median: pauses and preemptions, not the phase's spread."""
    keep = within_mads(x, OUTLIER_MADS, OUTLIER_FLOOR)
    return x[keep] if keep.sum() >= MIN_SAMPLES else x


def fit_samples(x: np.ndarray, dist: str = "auto") -> dict[str, Any]:
    """A CostSpec table for durations ``x`` (ms) in family ``dist`` (moment fit).

    Parametric families are fitted without outliers (:func:`trim_outliers`);
    ``empirical`` keeps every sample.
    """
    if dist == "empirical":
        return {"dist": "empirical", "samples": [round(float(v), 6) for v in x]}
    x = trim_outliers(x)
    if dist == "auto":
        dist = choose_dist(x)
    mean = float(x.mean())
    if dist == "constant":
        return {"dist": "constant", "mean": round(mean, 6)}
    cv = float(x.std(ddof=1) / mean) if len(x) > 1 and mean > 0 else 0.0
    return {"dist": dist, "mean": round(mean, 6), "cv": round(cv, 6)}


def minimal_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` in the model's field order without fields at their default (``dist``
    always shown), so fitted and kept phases are written in one form."""
    full = CostSpec.model_validate(spec)
    out: dict[str, Any] = {}
    for name, info in CostSpec.model_fields.items():
        value = getattr(full, name)
        if name == "dist" or (value is not None and value != info.default):
            out[name] = value
    return out


def _steady(spans: pd.DataFrame, warmup: int) -> pd.DataFrame:
    later = spans[spans["chunk"] >= warmup]
    return later if len(later) >= MIN_SAMPLES else spans


def fit_phases(trace: Trace, costs: dict[str, Any], warmup: int, dist: str,
               solo: pd.Series | None = None) -> list[PhaseFit]:
    """Fit every phase the trace ran; keep the given spec of phases it did not run.

    ``solo``: each compute span's solo-equivalent duration (index of ``trace.spans``);
    by default its measured duration.
    """
    sp = trace.spans
    sp = sp[sp["lane"] == "compute"]
    if solo is not None:
        sp = sp.assign(end_ms=sp["start_ms"] + solo.loc[sp.index])
    fits = []
    for phase in PHASES:
        runs = _steady(sp[sp["name"] == phase], warmup)
        if runs.empty:
            if phase in costs:
                spec = minimal_spec({k: v for k, v in costs[phase].items() if v is not None})
                fits.append(PhaseFit(phase, spec, 0, float("nan"), float("nan")))
            continue
        x = (runs["end_ms"] - runs["start_ms"]).to_numpy(dtype=float)
        spec = fit_samples(x, dist)
        spec = minimal_spec(spec)
        if phase == "denoise":  # fitted from the trace, so written even when it is 1
            spec["steps"] = max(1, int(runs["step"].max()) + 1)  # step -1: not recorded
        kept = x if dist == "empirical" else trim_outliers(x)
        cv = float(kept.std(ddof=1) / kept.mean()) if len(kept) > 1 and kept.mean() > 0 else 0.0
        fits.append(PhaseFit(phase, spec, len(x), float(kept.mean()), cv, len(x) - len(kept)))
    return fits


def _clean(table: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(table or {}).items() if v is not None}


def _run_of(trace: Trace) -> dict[str, Any]:
    """The trace's ``run`` table, or one made from the trace (a probe trace may have none):
    as many chunks as it emitted, the default warm-up unless that leaves too few."""
    if isinstance(trace.meta.get("run"), dict):
        return _clean(trace.meta["run"])
    chunks = max(1, int(trace.marks("emit")["chunk"].nunique()))
    return {"chunks": chunks} if chunks > 2 * DEFAULT_WARMUP else \
        {"chunks": chunks, "warmup": chunks // 4}


def _policy_of(trace: Trace, name: str | None) -> dict[str, Any]:
    """The trace's policy; ``name`` replaces it (keeping its fields if it is the same)."""
    given = _clean(trace.meta.get("policy")) if isinstance(trace.meta.get("policy"), dict) \
        else {}
    if name is None:
        return given
    return {**given, "name": name} if given.get("name") == name else {"name": name}


def calibrate_trace(trace: Trace, dist: str = "auto", warmup: int | None = None,
                    policy: str | None = None, sets: list[str] | None = None,
                    probed: dict[str, tuple[dict[int, float], str]] | None = None
                    ) -> Calibrated:
    """The trace's scenario with its cost model and transport fitted to the trace.

    ``policy`` names the policy to use instead of the trace's (a probe or imported trace
    may name none); ``sets`` are ``table.field=value`` overrides applied to the result
    before it is validated (``policy.d_in=2``, ``run.frames_per_chunk=4``);
    ``probed``: device -> (rates, note) measured by a probe; those rates are used as
    they are (not fitted) and the solo costs are derived with them.
    """
    if dist not in DISTS:
        raise ScenarioError("--dist", f"unknown family {dist!r} (allowed: {', '.join(DISTS)})")
    meta = trace.meta
    compute = trace.spans[trace.spans["lane"] == "compute"]
    if compute.empty:
        raise TraceError("MEASURED", f"no compute spans in {len(trace.events)} rows: "
                         "nothing to fit (was the run cut short?)")
    run = _run_of(trace)
    wu = int(warmup if warmup is not None else run.get("warmup", 0))
    tables = _placement_tables(meta)
    placement = build_placement(tables.get("placement", {}), tables.get("devices", {}))
    stages = tuple(sorted(compute["stage"].unique()))
    solo, devices = solo_durations(compute, placement, stages, wu, probed)
    fits = fit_phases(trace, meta.get("costs") or {}, wu, dist, solo)
    link = fit_link(trace, meta.get("transport") or {},
                    _roles(run, _policy_of(trace, policy), fits, meta, sets))
    transport = link.table
    given_run = meta.get("run")
    saturated = isinstance(given_run, dict) and given_run.get("source") == "saturated"
    gaps = fit_dispatch(trace.spans, wu, saturated)
    name = f"{meta.get('scenario_name', 'scenario')}-calibrated"
    raw: dict[str, Any] = {
        "name": name,
        "run": run,
        "policy": _policy_of(trace, policy),
        "costs": {f.phase: f.spec for f in fits},
        "transport": transport,
        **_placement_tables(meta, devices),
    }
    raw = apply_overrides(raw, list(sets or []))
    pol = raw.get("policy")
    if isinstance(pol, dict) and not pol.get("name"):
        raise TraceError("meta.policy", "missing: the trace names no policy; pass "
                         "--policy NAME (e.g. phase_pp) or --set policy.name=NAME")
    try:
        scenario = build_scenario(raw, name=name)
    except ScenarioError as exc:
        if isinstance(meta.get("probe"), dict) and str(exc.field).startswith("costs."):
            raise ScenarioError(exc.field, f"{str(exc).split(': ', 1)[1]} (one rank's probe "
                                "file? merge the ranks first: pipefill merge rank0.parquet "
                                "rank1.parquet --out run.parquet)") from None
        raise
    check_window(scenario.run)
    # the gaps of the stages the policy runs (a probe trace may name its own stages)
    gaps = [g for g in gaps if g.stage in scenario.stage_names]
    if any(g.ms > 0 for g in gaps) and "dispatch" not in raw:
        raw["dispatch"] = {g.stage: round(g.ms, 6) for g in gaps if g.ms > 0}
        scenario = build_scenario(raw, name=name)
    return Calibrated(raw, scenario, fits, transport, devices, gaps, link)


def _roles(run: dict[str, Any], policy: dict[str, Any], fits: list[PhaseFit],
           meta: dict[str, Any], sets: list[str] | None) -> dict[str, str | None]:
    """What each stage of the policy the calibrated scenario will run sends (the
    policy's queue roles); none when that scenario does not build (its error is
    raised later, with the fitted transport)."""
    raw = {"run": run, "policy": policy, "costs": {f.phase: f.spec for f in fits},
           "transport": _clean(meta.get("transport"))}
    try:
        return send_roles(build_scenario(apply_overrides(raw, list(sets or []))))
    except (ScenarioError, TypeError, ValueError):
        return {}


def _placement_tables(meta: dict[str, Any], fits: list[DeviceFit] | None = None
                      ) -> dict[str, Any]:
    """The trace scenario's ``[placement]`` and ``[devices]`` with the fitted rates."""
    source = meta.get("scenario")
    raw: dict[str, Any] = source if isinstance(source, dict) else {}
    out: dict[str, Any] = {}
    if raw.get("placement"):
        out["placement"] = dict(raw["placement"])
    devices = {d: dict(t) for d, t in (raw.get("devices") or {}).items()}
    for fit in fits or []:
        table = devices.setdefault(fit.device, {})
        table["rate"] = {str(n): round(r, 6) for n, r in fit.rates.items()}
    if devices:
        out["devices"] = devices
    return out
