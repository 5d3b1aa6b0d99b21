"""Helpers shared by the multi-process dist tests (this module holds no tests).

Every spawned rank inherits the environment, so a test marks its runs with a unique
token and afterwards scans /proc for any process still carrying it: none may survive.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

TOKEN_VAR = "PIPEFILL_TEST_RUN"
#: small costs and few chunks: a dist run takes a few seconds on 2 cores
FAST = ["--set", "run.chunks=6", "--set", "run.warmup=2", "--set", "costs.build.mean=1",
        "--set", "costs.denoise.mean=2", "--set", "costs.decode.mean=2",
        "--set", "costs.recompute.mean=1", "--set", "costs.encode.mean=1"]


def processes_with(token: str) -> list[int]:
    """Pids of live processes whose environment carries ``token``."""
    found = []
    needle = f"{TOKEN_VAR}={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def run_token(monkeypatch: pytest.MonkeyPatch):
    """Tag the ranks this test starts; fail if any of them outlives the test."""
    token = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_VAR, token)
    yield token
    assert processes_with(token) == [], "a rank survived its run"


@pytest.fixture(scope="session")
def dist_cal(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """One calibration cache for every dist test (rank0 measures it once)."""
    return ["--calibration", str(tmp_path_factory.mktemp("distcal") / "calibration.json")]
