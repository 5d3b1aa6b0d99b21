"""The built wheel installs one package: only ``pipefill/`` (and its dist-info).

The wheel is built from a copy of the sources (the checkout is left alone), unpacked,
and a fresh interpreter with the unpacked folder first on ``sys.path`` imports every
module from it and runs ``pipefill simulate``. About 10 s, most of it importing torch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers import ROOT

SOURCES = ("pyproject.toml", "README.md", "api", "sim", "exec", "traces", "reports", "cli", "probe")

_CHECK = """
import importlib, json, pkgutil, sys
import pipefill
files = {"pipefill": pipefill.__file__}
for info in pkgutil.walk_packages(pipefill.__path__, "pipefill."):
    if not info.name.endswith("__main__"):
        files[info.name] = importlib.import_module(info.name).__file__
from pipefill.cli import main
sys.argv = ["pipefill", "simulate", "--json", "--set", "run.chunks=20"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(files))
"""


def _setuptools_major() -> int:
    try:
        return int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return 0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if _setuptools_major() < 68:  # pyproject's build requirement; no index to fetch it from
        pytest.skip("building the wheel offline needs setuptools >= 68 in this environment")
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", str(src), "-w", str(out)], check=True, capture_output=True,
                   timeout=120)
    (whl,) = out.glob("pipefill-*.whl")
    return whl


def test_the_wheel_holds_only_the_pipefill_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"pipefill", wheel.name.split("-py")[0]
                                                + ".dist-info"}
    assert "pipefill/sim/scenario/default_scenario.toml" in names
    assert "pipefill/exec/dist/__main__.py" in names and "pipefill/cli/__main__.py" in names
    # the facade (api/) is the package's own __init__ and modules
    assert {"pipefill/__init__.py", "pipefill/predict.py", "pipefill/measure.py",
            "pipefill/results.py"} <= set(names)


def test_every_module_imports_from_the_unpacked_wheel_and_simulate_runs(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = f"import sys; sys.path.insert(0, {str(site)!r}); exec({_CHECK!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    summary, files = out.stdout.strip().splitlines()[:-1], json.loads(
        out.stdout.strip().splitlines()[-1])
    assert json.loads("\n".join(summary))["chunks"] == 20
    expected = {p.relative_to(site).with_suffix("").as_posix().replace("/", ".")
                .removesuffix(".__init__")
                for p in (site / "pipefill").rglob("*.py") if p.stem != "__main__"}
    assert set(files) == expected
    assert all(Path(f).is_relative_to(site) for f in files.values())
