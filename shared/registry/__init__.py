"""The model registry: immutable numbered versions and a production alias with its history."""
