"""Fixtures: a clock the tests move, and a local CA issuing certificates into a credentials folder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.embedded.local_credentials import LocalCredentialProvider
from shared.credentials import selfsigned

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Store:
    """A credentials folder with a local CA; ``issue`` writes ``<name>.pem`` valid for ``days``."""

    def __init__(self, root: Path, clock: Clock) -> None:
        self.root = root
        self.clock = clock
        self.ca = selfsigned.make_ca("TIE test CA", now=clock())
        selfsigned.write(root, "test-ca", self.ca, with_key=False)
        self.provider = LocalCredentialProvider(root)

    def issue(self, name: str, *, days: float = 365, cn: str | None = None) -> selfsigned.Issued:
        issued = selfsigned.issue(self.ca, cn or name, now=self.clock(), days=days)
        selfsigned.write(self.root, name, issued)
        return issued


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Store:
    return Store(tmp_path / "credentials", clock)
