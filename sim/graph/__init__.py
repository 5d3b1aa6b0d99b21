"""Timed event graphs: the max-plus algebra of periodic schedules (cycle ratios, regimes)
and the generic model types a bound is read from. Pure: no scenario, engine or policy."""
