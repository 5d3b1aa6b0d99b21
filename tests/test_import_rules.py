"""The import rules of ARCHITECTURE.md: what each pipefill package may import.

Static: every import statement of every module (inside functions too) is read with
``ast``. Dynamic: a fresh interpreter imports every module of a package and looks at
what was loaded along the way (third-party modules pulling in more count too).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ("api", "sim", "exec", "traces", "reports", "cli", "probe")
#: package -> module prefixes its code must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # the facade (installed as pipefill itself) returns data: it neither prints nor draws
    "api": ("pipefill.cli", "pipefill.reports", "typer", "rich", "matplotlib"),
    "traces": ("pipefill.sim", "pipefill.exec", "pipefill.reports", "pipefill.cli",
               "simpy", "torch", "typer", "rich", "matplotlib"),
    "sim": ("pipefill.exec", "pipefill.reports", "pipefill.cli",
            "torch", "typer", "rich", "matplotlib"),
    "reports": ("pipefill.sim", "pipefill.exec", "pipefill.cli", "simpy", "torch", "typer",
                "rich"),
    "exec": ("pipefill.reports", "pipefill.cli", "typer", "rich", "matplotlib"),
    "cli": (),
    "probe": ("pipefill.sim", "pipefill.exec", "pipefill.reports", "pipefill.cli", "simpy",
              "typer", "rich", "matplotlib"),
}
#: the pre-namespace top-level names: nothing may import them any more
BARE = ("sim", "exec", "traces", "reports", "cli")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            found.append((node.lineno, node.module or ""))
    return sorted(found)


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if top in BARE or any(_matches(module, p) for p in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_it_may(package):
    assert violations(package) == []


def test_tests_bench_and_scripts_use_the_namespace():
    files = [p for folder in ("tests", "bench", "scripts", "examples")
             for p in sorted((ROOT / folder).rglob("*.py"))]
    bad = [f"{p.relative_to(ROOT)}:{line}: {m}"
           for p in files for line, m in imports_of(p) if m.split(".")[0] in BARE]
    assert bad == []


def test_the_checker_catches_a_violation(tmp_path, monkeypatch):
    pkg = tmp_path / "traces"
    pkg.mkdir()
    (pkg / "bad.py").write_text("def f():\n    from pipefill.sim.engine.core import simulate\n"
                                "import sim.scenario\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations("traces") == ["traces/bad.py:2: imports pipefill.sim.engine.core",
                                    "traces/bad.py:3: imports sim.scenario"]


_LOADED = """
import importlib, json, pkgutil, sys
pkg = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize(("package", "absent"), [
    ("pipefill.sim", ("torch", "typer", "rich", "matplotlib", "pipefill.exec",
                      "pipefill.reports", "pipefill.cli")),
    ("pipefill.traces", ("torch", "simpy", "matplotlib", "pipefill.sim", "pipefill.exec")),
])
def test_importing_a_whole_package_loads_nothing_it_must_not(package, absent):
    out = subprocess.run([sys.executable, "-c", _LOADED, package], capture_output=True,
                         text=True, timeout=120, check=True)
    loaded = json.loads(out.stdout)
    assert any(m.startswith(package + ".") for m in loaded)
    assert [m for m in loaded if any(_matches(m, a) for a in absent)] == []


def test_importing_the_probe_loads_only_the_standard_library():
    """What a user's pipeline pays for ``from pipefill import probe`` (its docstring's
    promise): no pandas/pyarrow/numpy/torch until a trace is saved or a CUDA span timed."""
    code = ("import json, sys; import pipefill.probe; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    heavy = ("torch", "pandas", "pyarrow", "numpy", "simpy", "pipefill.sim", "pipefill.exec")
    assert [m for m in json.loads(out.stdout) if any(_matches(m, h) for h in heavy)] == []


def test_bound_and_help_load_no_trace_tables():
    """The README's promise: `--help` and `bound` of the default scenario (a fixed-order
    policy: no settling simulation) start without pandas, simpy, matplotlib or torch."""
    code = ("import json, sys; from pipefill.cli import app; "
            "app(sys.argv[1:], standalone_mode=False); "
            "print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    heavy = ("pandas", "simpy", "matplotlib", "torch")
    for args in (["--help"], ["bound"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                             text=True, timeout=120, check=True)
        loaded = json.loads(out.stderr.strip().splitlines()[-1])
        assert [m for m in loaded if any(_matches(m, h) for h in heavy)] == [], args


def test_simulate_of_the_default_scenario_loads_no_heavy_library():
    """Start-up (issue 25): the default scenario runs on the fast path without numba (a
    small run's recurrence is plain Python), pandas or pyarrow (metrics are online, no
    table is built) and without SimPy; a written trace loads pyarrow, a long run numba."""
    code = ("import json, sys; from pipefill.cli import app\n"
            "try:\n    app(sys.argv[1:], standalone_mode=False)\n"
            "except SystemExit:\n    pass\n"
            "print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    heavy = ("numba", "llvmlite", "pandas", "pyarrow", "simpy", "matplotlib", "torch")

    def loaded(*args: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                             text=True, timeout=120, check=True)
        mods = json.loads(out.stderr.strip().splitlines()[-1])
        return sorted({h for h in heavy for m in mods if _matches(m, h)})

    assert loaded("simulate") == []
    assert loaded("simulate", "--engine", "simpy") == ["simpy"]
    assert "numba" in loaded("simulate", "--set", "run.chunks=50000", "--json")


#: sim/'s layers, lowest first: a module imports (at run time) only from its own layer or
#: a lower one. Only typing may look up (``if TYPE_CHECKING:``): the policies name the
#: scenario they compile, which itself holds a policy.
SIM_LAYERS = ("errors", "program", "graph", "policies", "scenario", "schedule", "precision",
              "fast", "engine", "bound", "fit", "sweep", "study")


def runtime_imports_of(path: Path) -> list[tuple[int, str]]:
    """Like :func:`imports_of`, without the imports under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for stmt in node.body for n in ast.walk(stmt)}
    return [(line, m) for line, m in imports_of(path) if not any(
        id(n) in typing_only and getattr(n, "lineno", None) == line for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom))]


def sim_layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["pipefill", "sim"] or len(parts) < 3:
        return None
    return SIM_LAYERS.index(parts[2])


def layer_violations(root: Path) -> list[str]:
    bad = []
    for path in sorted((root / "sim").rglob("*.py")):
        rel = path.relative_to(root / "sim").with_suffix("")
        if rel.parts[0] == "__init__":
            continue
        own = SIM_LAYERS.index(rel.parts[0])
        for line, module in runtime_imports_of(path):
            layer = sim_layer(module)
            if layer is not None and layer > own:
                bad.append(f"sim/{'/'.join(rel.parts)}.py:{line}: {rel.parts[0]} imports "
                           f"{module} ({SIM_LAYERS[layer]} is above it)")
    return bad


def test_every_sim_folder_is_a_layer():
    folders = {p.stem if p.is_file() else p.name for p in (ROOT / "sim").iterdir()
               if p.name != "__init__.py" and p.name != "__pycache__"
               and (p.is_dir() or p.suffix == ".py")}
    assert folders == set(SIM_LAYERS)


def test_sim_layers_only_point_down():
    assert layer_violations(ROOT) == []


def test_the_layer_check_catches_an_upward_import_but_not_a_typing_one(tmp_path):
    pol = tmp_path / "sim" / "policies"
    pol.mkdir(parents=True)
    (pol / "x.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pipefill.sim.scenario.model import Scenario\n"
        "def f():\n    from pipefill.sim.scenario.model import Scenario\n", encoding="utf-8")
    assert layer_violations(tmp_path) == [
        "sim/policies/x.py:5: policies imports pipefill.sim.scenario.model "
        "(scenario is above it)"]
