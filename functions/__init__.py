"""Thin trigger adapters, one ``func.Blueprint`` per trigger family.

Each trigger body builds input, calls the core in ``shared/``, and maps the result.
"""
