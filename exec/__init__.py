"""The real executor: the same policy programs on torch (see exec.replay.replay)."""
