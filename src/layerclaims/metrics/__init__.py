"""Metrics: pure functions over arrays. No model, no I/O."""
