"""Executor threads backend: one thread per stage interpreting the policy programs."""
