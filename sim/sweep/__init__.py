"""What-if sweeps: grids, where their tasks run, streamed results, and replicas."""
