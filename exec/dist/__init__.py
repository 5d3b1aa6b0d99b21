"""Distributed executor: rank0 + mesh ranks over torch.distributed (gloo/NCCL)."""
