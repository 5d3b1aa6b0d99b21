"""The tests mirror the packages, and pytest collects every one of them."""

from __future__ import annotations

import fnmatch
import tomllib

from tests.helpers import ROOT

PACKAGES = {"api", "sim", "exec", "traces", "reports", "cli", "probe"}


def test_pytest_recurses_into_every_test_folder():
    opts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    skipped = opts.get("norecursedirs")
    assert skipped is not None, "pytest's default norecursedirs skips tests/exec/dist"
    folders = [p for p in (ROOT / "tests").rglob("*") if p.is_dir()
               and "__pycache__" not in p.parts]
    assert [p.name for p in folders if any(fnmatch.fnmatch(p.name, s) for s in skipped)] == []


def test_test_folders_mirror_packages():
    for path in (ROOT / "tests").rglob("test_*.py"):
        rel = path.relative_to(ROOT / "tests")
        if len(rel.parts) == 1:
            continue  # project-wide: import rules, layout, wheel, README
        top = "api" if rel.parts[0] == "api" else rel.parts[0]
        assert top in PACKAGES, rel
        folder = ROOT / top if top != "api" else ROOT / "api"
        assert (folder.joinpath(*rel.parts[1:-1])).is_dir(), f"{rel}: no package folder mirrors it"
        assert (path.parent / "__init__.py").exists(), f"{rel.parent}: not a package"
