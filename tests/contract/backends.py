"""The backends every contract suite runs on: SQLite (local) and Azure (Azurite, marked ``azurite``)."""

from __future__ import annotations

import pytest

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("azure", id="azure", marks=pytest.mark.azurite),
]
