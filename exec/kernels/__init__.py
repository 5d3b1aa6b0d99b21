"""Kernel families the executor runs for a phase: calibrated, spin and model kernels."""
