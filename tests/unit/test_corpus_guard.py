"""tests.helpers.corpus_missing: a missing corpus is a skip locally and a failure under CI=true."""

from __future__ import annotations

import pytest

from tests.helpers import corpus_missing

# Both outcomes are caught (then told apart), so a wrong outcome fails this test instead of skipping it.
_OUTCOMES = (pytest.fail.Exception, pytest.skip.Exception)


def test_missing_corpus_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(_OUTCOMES) as outcome:
        corpus_missing("../shared/corpora is not present")
    assert outcome.type is pytest.fail.Exception
    assert "CI=true" in str(outcome.value)


@pytest.mark.parametrize("value", [None, "false", "1"])
def test_missing_corpus_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(_OUTCOMES) as outcome:
        corpus_missing("../shared/corpora is not present")
    assert outcome.type is pytest.skip.Exception
