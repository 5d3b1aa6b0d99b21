"""NCCL before 2.30 refuses two ranks on one GPU: auto falls back to gloo, nccl is refused."""

from __future__ import annotations

import pytest
import torch

from pipefill.exec.dist import config as dist_config
from pipefill.exec.dist.config import DistOptions
from pipefill.exec.errors import ExecConfigError


@pytest.fixture
def one_gpu(monkeypatch):
    """Pretend: CUDA with one GPU and NCCL 2.28.9 (what an H200 box had)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(dist_config.dist, "is_nccl_available", lambda: True)
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 28, 9))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


def test_auto_picks_gloo_when_ranks_would_share_a_gpu(one_gpu):
    assert DistOptions(dist_backend="auto").backend_for("cuda", 2) == "gloo"


def test_explicit_nccl_is_refused_naming_the_field(one_gpu):
    with pytest.raises(ExecConfigError) as info:
        DistOptions(dist_backend="nccl").backend_for("cuda", 2)
    assert info.value.field == "--dist-backend"
    assert "2 ranks on 1 GPU(s) with NCCL 2.28.9" in str(info.value)


def test_nccl_is_kept_when_each_rank_has_a_gpu(one_gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert DistOptions(dist_backend="auto").backend_for("cuda", 2) == "nccl"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 30, 1))
    assert DistOptions(dist_backend="nccl").backend_for("cuda", 2) == "nccl"


def test_torchrun_counts_only_the_ranks_on_this_machine(one_gpu, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # 2 ranks across 2 machines
    assert DistOptions(dist_backend="nccl").backend_for("cuda", 2) == "nccl"
