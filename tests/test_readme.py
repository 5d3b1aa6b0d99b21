"""Every `pipefill ...` command line in README.md's fenced shell blocks runs as written
(issue 13, item 4), in README order in one directory, with small chunk counts.

A line is run when, after an optional ``$ ``, it starts with ``pipefill`` (run in-process
with CliRunner) or ``python examples/...`` (a README example making the input of the
next lines; run as a subprocess with the script taken from the repository); ``&&``
chains each part, a ``| jq ...`` tail is dropped (and the command's stdout must then
be JSON), a line ending in ``\\`` goes on on the next. A line whose comment contains
``not run`` is skipped (e.g. one that needs CUDA or a cluster). Commands that take
``--set`` get ``run.chunks``/``run.warmup`` appended. Every shell command of the README
is in a fenced block (issue 22: an indented block escaped this test).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

from typer.testing import CliRunner

from pipefill.cli import app
from tests.helpers import ROOT

README = ROOT / "README.md"
#: how a README line starts for each program the test runs
PROGRAMS = ("pipefill ", "python examples/")
FENCE = re.compile(r"^```(\w*)\s*$")
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console")
#: appended to commands that take a scenario: a short run keeps the test fast
SMALL = {cmd: ["--set", "run.chunks=12", "--set", "run.warmup=2"]
         for cmd in ("simulate", "sweep", "bound", "replay", "study")}


def shell_lines(text: str) -> list[str]:
    """The lines of fenced blocks whose info string is a shell (or empty); a line ending
    in a backslash is joined with the next."""
    lines, lang, cont = [], None, ""
    for line in text.splitlines():
        m = FENCE.match(line.strip())
        if m:
            lang = None if lang is not None else m.group(1)
            continue
        if lang in SHELL_BLOCKS:
            joined = f"{cont} {line.strip()}".strip()
            if joined.endswith("\\"):
                cont = joined[:-1].strip()
                continue
            lines.append(joined)
            cont = ""
    return lines


def indented_commands(text: str) -> list[str]:
    """Command lines in indented (unfenced) code blocks: none should be there."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced and line.startswith("    ") and line.strip().startswith(
                (*PROGRAMS, "torchrun ", "dask ")):
            out.append(line.strip())
    return out


def commands(text: str) -> list[tuple[list[str], bool]]:
    """(argv, piped to jq) for every command line that is run; argv[0] is the program."""
    out = []
    for line in shell_lines(text):
        line = line.removeprefix("$ ").strip()
        if not line.startswith(PROGRAMS) or "not run" in line.partition("#")[2]:
            continue
        for argv in _split(shlex.split(line, comments=True), "&&"):
            piped = "|" in argv
            argv = argv[:argv.index("|")] if piped else argv
            assert argv[0] in ("pipefill", "python"), f"a chained part is not run: {argv!r}"
            out.append((argv, piped))
    return out


def _split(tokens: list[str], sep: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for tok in tokens:
        if tok == sep:
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts


def test_the_extractor_reads_chains_pipes_comments_and_skips():
    text = "\n".join([
        "```bash", "pipefill simulate --out a.parquet   # a comment",
        "$ pipefill bound --json | jq '{period_ms}'",
        "pipefill replay --device cuda --out m.parquet   # not run: needs CUDA",
        "python3 -m venv .venv && .venv/bin/pipefill simulate",
        "pipefill simulate --set 'policy.anchor=\"anchor_only\"' && pipefill diff a b",
        "```", "```toml", "pipefill = 1", "```", "    pipefill indented --not-fenced"])
    assert commands(text) == [
        (["pipefill", "simulate", "--out", "a.parquet"], False),
        (["pipefill", "bound", "--json"], True),
        (["pipefill", "simulate", "--set", 'policy.anchor="anchor_only"'], False),
        (["pipefill", "diff", "a", "b"], False)]
    assert commands("```bash\npython examples/x.py --out r.parquet   # makes r\n```") == [
        (["python", "examples/x.py", "--out", "r.parquet"], False)]
    assert commands("```bash\npipefill sweep --grid a=1 \\\n    --out s.parquet\n"
                    "pipefill sweep \\\n --scheduler tcp://x   # not run: a cluster\n```") == [
        (["pipefill", "sweep", "--grid", "a=1", "--out", "s.parquet"], False)]
    assert indented_commands("text\n\n    pipefill simulate\n```\n    pipefill bound\n```") \
        == ["pipefill simulate"]


def test_every_shell_command_of_the_readme_is_fenced():
    assert indented_commands(README.read_text(encoding="utf-8")) == []


def test_every_readme_command_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIPEFILL_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    ran = []
    for argv, piped in commands(README.read_text(encoding="utf-8")):
        if argv[0] == "python":
            proc = subprocess.run([sys.executable, str(ROOT / argv[1]), *argv[2:]], text=True,
                                  capture_output=True, timeout=300, check=False)
            assert proc.returncode == 0, f"{shlex.join(argv)}: {proc.stderr[-2000:]}"
            continue
        cmd = argv[1:]
        full = [*cmd, *SMALL.get(cmd[0], [])]
        res = runner.invoke(app, full)
        assert res.exit_code == 0, f"pipefill {shlex.join(cmd)}: {res.output}"
        if piped:
            json.loads(res.stdout)  # what the README pipes into jq is JSON
        ran.append(cmd[0])
    # the README shows every command a new user needs
    assert {"simulate", "sweep", "bound", "replay", "diff", "calibrate", "report",
            "export", "merge", "explain", "check", "study"} <= set(ran)
