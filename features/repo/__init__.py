"""Feast definitions of the feature store (no side effects at import)."""
