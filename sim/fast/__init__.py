"""The fast path: max-plus re-timing of a recorded fixed-order schedule, and its metrics."""
