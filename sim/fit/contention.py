"""Fit solo costs and contention rates from the spans of stages that share a device.

On a shared device a compute's measured duration ``d`` mixes its solo cost ``c`` and
the slow-down while other computes overlapped it. Under processor sharing
(:mod:`pipefill.sim.engine.contention`) a call that spent ``o_n`` ms with ``n`` computes running
(itself included) and the rest alone did ``c = (d - sum o_n) + sum r_n o_n`` of work, so

    d = c_phase + sum_n (1 - r_n) * o_n

a linear model with one intercept per phase (the solo mean) and one slope per level.
Spans that ran alone give the solo costs; with those known, spans that overlapped give
the rates by least squares (no intercept). Each span's *solo-equivalent* duration
``d - sum_n (1 - r_n) o_n`` then feeds the usual per-phase distribution fit. A level with
no overlap (a serial trace) or that the data cannot separate from the phases keeps its
given rate (default 1/n): say so, and measure it with a probe instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipefill.sim.scenario.devices import Placement

#: fewest overlapped calls before a level's rate is fitted
MIN_OVERLAPPED = 3
#: fitted rates are kept within [MIN_RATE, 1]
MIN_RATE = 0.05


@dataclass(frozen=True)
class DeviceFit:
    """What the trace said about one shared device.

    ``rates``: rate per level in use (fitted or kept); ``fitted``: the levels fitted from
    this trace; ``overlapped``: calls that overlapped at each level; ``overlap_ms``: the
    time spent at each level; ``solo_calls``: calls that ran alone the whole time.
    """

    device: str
    stages: tuple[str, ...]
    rates: dict[int, float]
    fitted: tuple[int, ...]
    overlapped: dict[int, int]
    overlap_ms: dict[int, float]
    solo_calls: int
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        levels = ", ".join(
            f"rate[{n}] = {r:.3f} ({'fitted from' if n in self.fitted else 'not fitted;'} "
            f"{self.overlapped.get(n, 0)} overlapped calls, {self.overlap_ms.get(n, 0.0):.0f} ms)"
            for n, r in self.rates.items())
        return (f"device {self.device} ({', '.join(self.stages)}): {self.solo_calls} calls "
                f"ran alone; {levels or 'no overlap'}")


def _calls(spans: pd.DataFrame) -> pd.DataFrame:
    """One row per compute call (a batched call is several spans with one interval)."""
    calls = spans.groupby(["stage", "start_ms", "end_ms"], sort=False, as_index=False).agg(
        name=("name", "first"), chunk=("chunk", "min"), items=("name", "size"))
    return calls.sort_values(["start_ms", "end_ms", "stage"], kind="stable").reset_index(drop=True)


def overlap_levels(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """ms each interval spent with n intervals active (itself included): shape (N, N + 1),
    column n for n active (column 0 unused)."""
    bounds = np.unique(np.concatenate([starts, ends]))
    delta = np.zeros(len(bounds))
    np.add.at(delta, np.searchsorted(bounds, starts), 1)
    np.add.at(delta, np.searchsorted(bounds, ends), -1)
    active = np.cumsum(delta)[:-1].astype(int)  # on segment [bounds[j], bounds[j + 1])
    seg = np.diff(bounds)
    out = np.zeros((len(starts), len(starts) + 1))
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        lo, hi = np.searchsorted(bounds, s), np.searchsorted(bounds, e)
        np.add.at(out[i], active[lo:hi], seg[lo:hi])
    return out


def fit_device(calls: pd.DataFrame, levels: np.ndarray, given: dict[int, float],
               steady: np.ndarray) -> tuple[dict[int, float], tuple[int, ...], list[str]]:
    """Rates per level from the steady calls.

    The solo mean of each call kind (phase, stage, batch) comes from its calls that ran
    alone; each overlapped call of a kind with a known solo mean then gives
    ``c - alone_ms = sum_n r_n o_n``, solved for the rates by least squares. Without
    calls that ran alone the two cannot be told apart (fully overlapped calls only show
    ``c / r``): the given rates are kept.
    """
    top = int(np.nonzero(levels.sum(axis=0))[0].max()) if levels.any() else 1
    rates = {n: given.get(n, 1.0 / n) for n in range(2, top + 1)}
    if top < 2:
        return rates, (), ["no call overlapped another: rates kept as given (measure them "
                           "with `pipefill calibrate --probe-contention`)"]
    dur = (calls["end_ms"] - calls["start_ms"]).to_numpy(dtype=float)
    over = levels[:, 2:top + 1]
    alone = over.sum(axis=1) == 0
    kind = calls[["name", "stage", "items"]].astype(str).agg("|".join, axis=1).to_numpy()
    solo: dict[str, float] = {}
    for k in np.unique(kind[steady & alone]):
        pick = steady & alone & (kind == k)
        if pick.sum() >= MIN_OVERLAPPED:
            solo[k] = float(dur[pick].mean())
    rows = steady & ~alone & np.isin(kind, list(solo))
    use = [j for j in range(over.shape[1]) if (over[rows, j] > 0).sum() >= MIN_OVERLAPPED]
    if not use:
        return rates, (), ["too few overlapped calls of a kind that also ran alone: solo "
                           "costs and contention cannot be told apart, rates kept as given "
                           "(measure them with `pipefill calibrate --probe-contention`)"]
    target = np.array([solo[k] for k in kind[rows]]) - levels[rows, 1]
    coef = np.linalg.lstsq(over[rows][:, use], target, rcond=None)[0]
    fitted = []
    for j, r in zip(use, coef, strict=True):
        rates[j + 2] = float(np.clip(r, MIN_RATE, 1.0))
        fitted.append(j + 2)
    return rates, tuple(fitted), []


Probed = dict[str, tuple[dict[int, float], str]]


def solo_durations(spans: pd.DataFrame, placement: Placement, stages: tuple[str, ...],
                   warmup: int, probed: Probed | None = None
                   ) -> tuple[pd.Series, list[DeviceFit]]:
    """Solo-equivalent duration of every compute span (indexed like ``spans``) and the
    fit of each shared device. Spans on devices of their own keep their duration;
    ``probed`` devices (device -> (rates, note)) use the probed rates as they are."""
    solo = (spans["end_ms"] - spans["start_ms"]).astype(float)
    fits = []
    key = ["stage", "start_ms", "end_ms"]
    for dev, group in placement.shared(stages).items():
        mine = spans[spans["stage"].isin(group)]
        if mine.empty:
            continue
        calls, fit = _fit_one(dev, group, _calls(mine), placement, warmup, probed or {})
        merged = mine[key].reset_index().merge(calls[[*key, "solo"]], on=key, how="left")
        solo.loc[merged["index"].to_numpy()] = merged["solo"].to_numpy()
        fits.append(fit)
    return solo, fits


def _fit_one(dev: str, group: tuple[str, ...], calls: pd.DataFrame, placement: Placement,
             warmup: int, probed: Probed) -> tuple[pd.DataFrame, DeviceFit]:
    """One device: its rates (probed or fitted) and each call's solo duration."""
    levels = overlap_levels(calls["start_ms"].to_numpy(float), calls["end_ms"].to_numpy(float))
    steady = (calls["chunk"] >= warmup).to_numpy()
    if steady.sum() < MIN_OVERLAPPED:
        steady = np.ones(len(calls), dtype=bool)
    fitted: tuple[int, ...] = ()
    if dev in probed:
        top = max(len(group), *probed[dev][0])
        rates = {n: probed[dev][0].get(n, 1.0 / n) for n in range(2, top + 1)}
        notes = [f"{probed[dev][1]}: used instead of a fit"]
    else:
        rates, fitted, notes = fit_device(calls, levels, placement.spec(dev).rate, steady)
    seen = [n for n in rates if n < levels.shape[1]]
    slow = sum((1.0 - rates[n]) * levels[:, n] for n in seen)
    calls = calls.assign(solo=(calls["end_ms"] - calls["start_ms"]).to_numpy(float) - slow)
    over_n = {n: int((levels[steady, n] > 0).sum()) for n in seen}
    over_ms = {n: float(levels[steady, n].sum()) for n in seen}
    alone = int((levels[steady, 2:].sum(axis=1) == 0).sum())
    return calls, DeviceFit(dev, group, rates, fitted, over_n, over_ms, alone, notes)
