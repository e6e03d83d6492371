"""Side effects at the edge: one module per system, every operation idempotent."""
