"""Inbound pipeline: accept at the edge, publish to the ingest topic, process from the bus."""
