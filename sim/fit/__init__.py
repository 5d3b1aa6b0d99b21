"""Fitting a scenario to a measured trace: phase costs, transport, dispatch gaps and contention."""
