"""Fixtures shared by the FHIR API unit tests: the embedded stores (``s``) and an API over them (``api``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.fhirapi import FhirApi
from tests.unit.fhirapi.fhirapi_helpers import Stores, make_api, stores


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Stores]:
    built = stores(tmp_path)
    yield built
    built.close()


@pytest.fixture
def api(s: Stores) -> FhirApi:
    return make_api(s)
