"""A study's report section from its JSON: the data behind each figure kind, and the
directory written whole."""

from __future__ import annotations

import json

import pytest

from pipefill.reports.inputs import ReportError
from pipefill.reports.study import (
    bars_data,
    heatmap_data,
    lines_data,
    render,
    write_study_report,
)


def study() -> dict:
    points = [{"variant": v, "label": f"{v}, a = {a}, b = {b}", "a": a, "b": b,
               "y": a * 10 + b, "error": "stalled" if (v, a, b) == ("w", 2, 2) else None}
              for v in ("v", "w") for a in (1, 2) for b in (1, 2)]
    return {"study": "toy", "title": "a toy", "question": "q?", "brief": "", "scenario": "s",
            "columns": ["y"], "labels": {"y": "y (ms)"}, "verdict": ["it is so"],
            "dims": [{"key": "variant", "label": "variant"}, {"key": "a", "label": "A"},
                     {"key": "b", "label": "B"}],
            "points": points, "measured": [],
            "figures": [{"kind": "heatmap", "metric": "y"}, {"kind": "bars", "metric": "y",
                                                             "line": 15.0},
                        {"kind": "lines", "metric": "y", "x": "b", "by": ["variant", "a"]}]}


def test_each_figure_kind_computes_what_it_draws():
    data = study()
    heat = heatmap_data(data, data["figures"][0])
    assert [s.name for s in heat] == ["v|a|b", "w|a|b"]
    assert heat[0].x == [(1, 1), (1, 2), (2, 1), (2, 2)] and heat[0].y == [11, 12, 21, 22]
    assert heat[1].y[-1] is None  # a point that could not run is not a value
    bars = bars_data(data, data["figures"][1])
    assert [s.name for s in bars] == ["v", "w"] and bars[0].x[0] == "v, a = 1, b = 1"
    lines = lines_data(data, data["figures"][2])
    assert [s.name for s in lines] == ["v, A = 1", "v, A = 2", "w, A = 1", "w, A = 2"]
    assert lines[3].x == [1.0, 2.0] and lines[3].y == [21.0, None]


def test_the_report_holds_one_section_its_figures_and_every_point(tmp_path):
    data = study()
    assert [f.filename for f in render(data)] == ["toy_0_heatmap.png", "toy_1_bars.png",
                                                  "toy_2_lines.png"]
    out = tmp_path / "r"
    files = write_study_report(data, out, "pipefill study toy.toml --out r")
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, ".pipefill-report"])
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<li>it is so</li>" in page and 'id="fig-toy_1_bars"' in page
    assert json.loads((out / "study.json").read_text())["points"] == data["points"]


def test_an_out_that_is_a_file_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "f"
    out.write_text("keep", encoding="utf-8")
    with pytest.raises(ReportError, match="--out"):
        write_study_report(study(), out, "x")
    assert out.read_text() == "keep"
