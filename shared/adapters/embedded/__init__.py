"""Embedded adapters: the SQLite, in-process and local-file implementations of the ports, for `tie run`,
tests and single-machine use. Each sits beside its Azure counterpart in :mod:`shared.adapters.azure`."""
