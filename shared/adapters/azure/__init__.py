"""Azure adapters: the only place in ``shared/`` allowed to import ``azure.*``."""
