"""Test-wide fixtures: every test gets its own embedded-default data directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import corpus_missing

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPORA = (REPO_ROOT / ".." / "shared" / "corpora").resolve()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads a developer's local.settings.json, .local/ or Azure settings."""
    from shared.config.settings import reset_settings
    from shared.wiring import set_container

    for name in list(os.environ):
        if name.startswith(("TIE_", "TieStorage__", "ServiceBusConnection__", "APPLICATIONINSIGHTS_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TIE_LOCAL_DIR", str(tmp_path / "local"))
    reset_settings()
    previous = set_container(None)
    yield
    current = set_container(previous)
    if current is not None and current is not previous:
        current.close()
    reset_settings()


@pytest.fixture
def container(tmp_path: Path) -> object:
    """The embedded-default container under the test's tmp dir, installed process-wide."""
    from shared.config.settings import get_settings
    from shared.wiring import build_container, set_container

    built = build_container(get_settings())
    set_container(built)
    return built


@pytest.fixture
def corpora() -> Path:
    if not CORPORA.is_dir():
        corpus_missing("../shared/corpora is not present")
    return CORPORA
