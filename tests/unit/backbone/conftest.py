"""Backbone tests: no process-wide backbone leaks from one test into the next."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_process_backbone() -> Iterator[None]:
    from shared.backbone.runtime import set_backbone

    yield
    previous = set_backbone(None)
    if previous is not None:
        previous.close()
