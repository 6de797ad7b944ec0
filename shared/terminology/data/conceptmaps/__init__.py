"""Concept maps, one ``<id>.json`` per map (format in ``shared/terminology/conceptmaps.py``)."""
