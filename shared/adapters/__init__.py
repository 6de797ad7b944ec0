"""Adapters from the core ports to external services."""
