"""What-if inputs: the scenario model, its TOML loader and overrides, cost models and devices."""
