"""Sweep figures of a sweep run to a precision: half-widths shown, unconverged points marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipefill.reports.inputs import Sweep
from pipefill.reports.pareto import draw_pareto, pareto_data
from pipefill.reports.sweep import draw_heatmaps, heatmap_data
from pipefill.sim.scenario.load import load_raw
from pipefill.sim.sweep.grid import Axis, run_sweep


@pytest.fixture(scope="module")
def sweep() -> Sweep:
    raw, name = load_raw(None)
    axes = [Axis("policy.d_in", (1, 2)), Axis("policy.d_out", (1, 2))]
    # a cap of 300 chunks: 0.3% is out of reach for the coupled points (D_out 1)
    table = run_sweep(raw, ["run.chunks=300", "costs.denoise.cv=0.3", "costs.decode.cv=0.3"],
                      axes, name, precision=0.003)
    assert table["converged"].tolist().count(False) >= 1
    return Sweep(Path("sw.parquet"), table, {"kind": "sweep"}, [a.field for a in axes])


def test_period_cells_carry_their_half_width_and_mark_the_cap(sweep):
    data = heatmap_data(sweep, "period")
    (panel,) = data.panels
    assert panel.ci is not None and panel.unconverged is not None
    t = sweep.table
    for _, row in t.iterrows():
        i, j = panel.y_values.index(row["policy.d_in"]), panel.x_values.index(row["policy.d_out"])
        assert panel.ci[i, j] == pytest.approx(row["period_ci_ms"])
        assert bool(panel.unconverged[i, j]) == (row["converged"] is False)
    fig = draw_heatmaps(data)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("±" in s for s in texts) and any("*" in s for s in texts)
    assert "± the 95% half-width" in fig.get_suptitle()


def test_pareto_points_have_error_bars_and_unconverged_ones_stand_out(sweep):
    pts = pareto_data(sweep).points
    np.testing.assert_allclose(pts["ci_ms"], sweep.table["period_ci_ms"])
    assert pts["unconverged"].tolist() == [c is False for c in sweep.table["converged"]]
    legend = draw_pareto(pareto_data(sweep)).axes[0].get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.texts]
    assert "95% interval of the period" in labels
    assert any(s.startswith("not converged") for s in labels)


def test_a_fixed_length_sweep_shows_its_intervals_and_marks_nothing():
    raw, name = load_raw(None)
    table = run_sweep(raw, ["run.chunks=200"], [Axis("policy.d_in", (1, 2)),
                                                Axis("policy.d_out", (1, 2))], name)
    s = Sweep(Path("f.parquet"), table, {"kind": "sweep"}, ["policy.d_in", "policy.d_out"])
    (panel,) = heatmap_data(s, "period").panels
    assert panel.ci is not None and panel.unconverged is not None
    assert np.isfinite(panel.ci).all() and not panel.unconverged.any()
    assert "not converged" not in draw_heatmaps(heatmap_data(s, "period")).get_suptitle()
