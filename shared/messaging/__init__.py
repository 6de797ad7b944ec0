"""Messaging: the bus port, topology, the embedded SQLite bus and message helpers."""
