"""Versioned terminology data files (package data; see ``shared/terminology/__init__.py``)."""
