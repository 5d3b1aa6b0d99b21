"""Distributed executor: one rank group per stage of the policy over torch.distributed (gloo/NCCL)."""
