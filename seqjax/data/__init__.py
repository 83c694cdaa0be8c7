"""Data: synthetic tasks (and, later, loaders for the real datasets)."""
