"""Studies are data: a user's study file loads and runs like the built-in ones, and a bad
one fails before any point runs with one error naming the file and the field."""

from __future__ import annotations

import pytest

import pipefill
from pipefill.sim.study.expr import ExprError, parse
from pipefill.sim.study.load import BUILTIN, StudyError, load_study
from pipefill.sim.study.points import Dim, Points
from tests.helpers.scenarios import make_scenario

#: a user's study: stage0 order against D_out, with a derived column and two rules
MINE = """
name = "order"
title = "stage0 order x D_out"
question = "Does consumer_first cost period?"
policy = "phase_pp"
show = ["period_ms", "slack_ms"]

[[axes]]
field = "policy.stage0_order"
label = "order"
values = ["producer_first", "consumer_first"]

[[axes]]
field = "policy.d_out"
label = "D_out"
values = [1, 2]

[derived]
slack_ms = "period_ms - max(stage0_ms, stage1_ms)"

[[rules]]
rule = "gate"
metric = "slack_ms"
at_most = 1.0
says = "within 1 ms of the bottleneck"

[[rules]]
rule = "range"
metric = "period_ms"
"""


def small():
    costs = {"build": 10, "denoise": {"mean": 40, "steps": 1}, "decode": 20}
    return make_scenario({"name": "phase_pp", "recompute": "r1"}, costs, chunks=60, warmup=5)


def test_a_user_study_file_loads_and_runs(tmp_path):
    path = tmp_path / "order.toml"
    path.write_text(MINE, encoding="utf-8")
    res = pipefill.study(path, small())
    assert [r["label"] for r in res.points.rows] == [
        "order = producer_first, D_out = 1", "order = producer_first, D_out = 2",
        "order = consumer_first, D_out = 1", "order = consumer_first, D_out = 2"]
    slack = [r["slack_ms"] for r in res.points.rows]
    assert slack == [pytest.approx(r["period_ms"] - 40.0, abs=1e-9) for r in res.points.rows]
    gate, span = res.verdict
    assert gate.startswith("within 1 ms of the bottleneck at 2 of 4 points; not at D_out = 1")
    assert span.startswith("period ") and "least at " in span


def test_the_built_in_studies_are_files_of_the_same_format():
    for name in BUILTIN:
        spec = load_study(name)
        assert spec.name == name and spec.rules and spec.show


BAD = [
    ("show = 3", "show"),
    ('[[rules]]\nrule = "nope"\nmetric = "period_ms"', "rules.0"),
    ('[[rules]]\nrule = "gate"\nmetric = "perod_ms"\nat_least = 1', "rules.0.metric"),
    ('[[rules]]\nrule = "gate"\nmetric = "period_ms"', "rules.0.gate"),
    ('[derived]\nx = "__import__(1)"', "derived"),
    ('[derived]\nx = "period_ms +"', "derived"),
    ('[derived]\nx = "perod_ms * 2"', "derived.x"),
    ('policy = "nope"', "policy"),
    ('[[variants]]\nlabel = "a"\n[[variants]]\nlabel = "a"', "variants"),
    ('[[axes]]\nfield = "d_in"\nvalues = [1]', "axes.0.field"),
    ('[[figures]]\nkind = "pie"\nmetric = "period_ms"', "figures.0.kind"),
    ('[[rules]]\nrule = "versus"\nreference = { nope = 1 }\nmetrics = ["period_ms"]',
     "rules.0.reference.nope"),
    ('extra = 1', "extra"),
]
HEAD = 'name = "bad"\ntitle = "t"\nquestion = "q"\n'
RULE = '[[rules]]\nrule = "range"\nmetric = "period_ms"\n'


@pytest.mark.parametrize(("body", "field"), BAD)
def test_a_bad_study_file_is_one_error_naming_the_field(tmp_path, body, field):
    text = HEAD + ('show = ["period_ms"]\n' if not body.startswith("show") else "") \
        + body + "\n" + (RULE if "[[rules]]" not in body else "")
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StudyError) as err:
        load_study(path)
    message = str(err.value)
    assert message.startswith(f"bad.toml: {field}"), message
    assert "\n" not in message


def test_unknown_names_and_unreadable_files(tmp_path):
    with pytest.raises(StudyError, match=r"^study: NAME: unknown study 'fil' \(built-in: fill"):
        load_study("fil")
    with pytest.raises(StudyError, match=r"^missing.toml: file: .*cannot read"):
        load_study(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ", encoding="utf-8")
    with pytest.raises(StudyError, match=r"^broken.toml: file: invalid TOML"):
        load_study(broken)


def test_expressions_allow_arithmetic_on_columns_and_nothing_else():
    e = parse("max(stage0_ms, stage1_ms) / (policy.items + 1) - -2")
    assert e.names == ("stage0_ms", "stage1_ms", "policy.items")
    values = {"stage0_ms": 30.0, "stage1_ms": 40.0, "policy.items": 3}
    assert e(values.get) == pytest.approx(12.0)
    assert parse("a / b")({"a": 1.0, "b": 0.0}.get) is None  # division by zero: missing
    assert parse("a + 1")({"a": None}.get) is None
    assert parse("first(a, b)")({"a": None, "b": 2.0}.get) == 2.0
    for bad in ("open('x')", "a.b()", "'text'", "a if b else c", "[a]", "a < b", "True"):
        with pytest.raises(ExprError):
            parse(bad)


def _grid() -> Points:
    rows = [{"variant": "", "label": f"{a},{b}", "a": a, "b": b}
            for a in (1, 2, 4) for b in (1, 2, 4)]
    return Points(tuple(rows), (Dim("a", "D_in"), Dim("b", "D_out")))


def test_point_sets_are_named_the_shortest_way():
    pts = _grid()
    idx = {(r["a"], r["b"]): i for i, r in enumerate(pts.rows)}
    assert pts.name([idx[1, 1], idx[2, 1], idx[4, 1]]) == "D_out = 1"
    assert pts.name([i for k, i in idx.items() if k[0] == 1 or k[1] == 1]) \
        == "D_in = 1 or D_out = 1"
    assert pts.name([idx[2, 2], idx[2, 4], idx[4, 2], idx[4, 4]]) == "D_in >= 2, D_out >= 2"
    assert pts.name(list(range(9))) == "every point"
    assert pts.name([idx[1, 2], idx[4, 4]]) == "D_in = 1, D_out = 2 or D_in = 4, D_out = 4"
    reach = [idx[2, 2], idx[2, 4], idx[4, 2], idx[4, 4]]
    assert pts.name([idx[2, 4], idx[4, 2], idx[4, 4]], within=reach) == "D_in = 4 or D_out = 4"


def test_a_policy_switch_keeps_the_scenarios_depths_and_user_sets_come_first():
    from pipefill.sim.study.run import variant_sets

    spec = load_study("sessions")
    base = {"name": "phase_pp", "d_in": 3, "d_out": 1, "recompute": "r0a"}
    fixed, window = spec.variants
    assert variant_sets(spec, fixed, base, ["run.chunks=30"]) == [
        "run.chunks=30", "policy.name=multi_session", "policy.d_in=3", "policy.d_out=1"]
    assert variant_sets(spec, window, base, [])[-1] == "policy.batch_window_ms=20.0"


def test_a_set_of_a_field_the_study_owns_is_refused():
    with pytest.raises(pipefill.ScenarioError, match=r"^--set: policy.d_out: study fill "
                                                     r"varies this field"):
        pipefill.study("fill", small(), sets=["policy.d_out=3"])
