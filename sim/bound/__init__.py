"""The analytic period bound: max-plus cycle ratios, the derived and lower-bound graphs, the
contention range, and what the bound says about a scenario."""
