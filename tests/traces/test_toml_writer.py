"""The one TOML writer: exact output for what scenarios hold, and round trips."""

from __future__ import annotations

import math
import tomllib

import pytest

from pipefill.traces.toml_writer import to_toml, toml_key, toml_value


def test_exact_output_of_tables_scalars_and_quoting():
    doc = {"name": "x", "run": {"chunks": 4, "seed": None},
           "costs": {"decode": {"mean": 1.5, "pattern": [1.0, 2.0]}},
           "policy": {"name": "phase_pp", "hard cuts": [3], "q\"uote": "a\\b\n"}}
    assert to_toml(doc, header="made by\n") == (
        '# made by\n'
        'name = "x"\n\n'
        '[run]\n'
        'chunks = 4\n\n'
        '[costs.decode]\n'
        'mean = 1.5\n'
        'pattern = [1.0, 2.0]\n\n'
        '[policy]\n'
        'name = "phase_pp"\n'
        '"hard cuts" = [3]\n'
        '"q\\"uote" = "a\\\\b\\u000a"\n')
    assert tomllib.loads(to_toml(doc)) == {**doc, "run": {"chunks": 4}}


def test_non_finite_floats_and_inline_tables_round_trip():
    doc = {"m": {"nan": math.nan, "inf": math.inf, "ninf": -math.inf,
                 "rows": [{"a": 1, "b": None}, {"c": "d"}]}}
    back = tomllib.loads(to_toml(doc))["m"]
    assert math.isnan(back["nan"]) and back["inf"] == math.inf and back["ninf"] == -math.inf
    assert back["rows"] == [{"a": 1}, {"c": "d"}]


@pytest.mark.parametrize(("value", "text"), [
    (True, "true"), (2, "2"), (0.1, "0.1"), (1e-5, "1e-05"), ("a\"b", '"a\\"b"'),
    ([1, None, "x"], '[1, "x"]'), (math.nan, "nan"), (-math.inf, "-inf"),
])
def test_values_as_set_and_grid_take_them(value, text):
    assert toml_value(value) == text
    back = tomllib.loads(f"v = {text}")["v"]
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == ([v for v in value if v is not None] if isinstance(value, list) else value)


def test_keys_and_errors():
    assert toml_key("d_in") == "d_in" and toml_key("a.b") == '"a.b"'
    with pytest.raises(TypeError, match="set"):
        toml_value({1, 2})
