"""`pipefill policies`: every policy from its own schema; --policy's help names them all."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from pipefill.cli import app
from pipefill.cli.app import POLICY_NAMES
from pipefill.sim.policies import POLICIES

runner = CliRunner()


def test_the_help_names_every_registered_policy():
    assert tuple(POLICIES) == POLICY_NAMES
    res = runner.invoke(app, ["simulate", "--help"])
    assert res.exit_code == 0
    words = " ".join(re.sub("[│╭╮╰╯─]", " ", res.output).split())
    assert ", ".join(POLICIES) in words


def test_lists_every_policy_with_its_fields():
    res = runner.invoke(app, ["policies", "--json"])
    assert res.exit_code == 0, res.output
    docs = {d["name"]: d for d in json.loads(res.stdout)}
    assert list(docs) == list(POLICIES)
    for name, cls in POLICIES.items():
        keys = [f.alias or n for n, f in cls.model_fields.items()]
        assert [f["name"] for f in docs[name]["fields"]] == keys
        assert docs[name]["summary"]
    d_in = next(f for f in docs["phase_pp"]["fields"] if f["name"] == "d_in")
    assert (d_in["type"], d_in["default"], d_in["range"]) == ("int", 2, ">= 1")
    anchor = next(f for f in docs["phase_pp"]["fields"] if f["name"] == "anchor")
    assert anchor["range"] == "one of full, anchor_only"


def test_one_policy_shows_its_contract_and_fields():
    res = runner.invoke(app, ["policies", "stream_batch"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("stream_batch: W stages")
    assert "Invariants" in res.output and "max_outstanding" in res.output


def test_an_unknown_policy_is_one_line_and_exit_2():
    res = runner.invoke(app, ["policies", "nope"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: policy.name: unknown policy 'nope' (allowed: " + ", ".join(POLICIES) + ")"]
