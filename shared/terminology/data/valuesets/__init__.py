"""Value sets, one ``<id>.json`` per set (format in ``shared/terminology/valuesets.py``)."""
