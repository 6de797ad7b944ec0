from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.embedded.pds_stub import PdsStub


@pytest.fixture
def pds_corpus(corpora: Path) -> Path:
    path = corpora / "nhs-pds-fhir-api"
    if not path.is_dir():
        from tests.helpers import corpus_missing

        corpus_missing("nhs-pds-fhir-api corpus is not present")
    return path


@pytest.fixture
def stub(pds_corpus: Path) -> PdsStub:
    return PdsStub(pds_corpus)
