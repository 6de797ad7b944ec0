"""Identity trace strategy and the IG-safe cache against the local PDS stand-in."""

from __future__ import annotations

import pytest

from shared.adapters.embedded.pds_stub import PdsStub, StubTransport
from shared.pds.auth import NoToken
from shared.pds.cache import PdsCache
from shared.pds.client import PdsFhirClient
from shared.pds.model import PdsPatient, TraceQuery
from shared.pds.trace import IdentityResolver

Q = TraceQuery
EF, EFH, E = ("exact", "fuzzy"), ("exact", "fuzzy", "history"), ("exact",)
REVIEW = "needs-review"
# (query, status, reason, steps tried, NHS number found)
TRACES = [
    (Q("SMITH", "JANE", "2010-10-22", "female", "LS1 6AE"), "matched", None, EF, "9000000009"),
    (Q("Smythe", "Janet", "2005-06-16", "female"), "matched", None, EF, "9000000025"),
    (Q("Smith", "John", "2000-05-05", "male", "DN17 4AA"), "matched", None, EFH, "5900022366"),
    (Q("McMatch-Multiple", "Bob", "1997-08-20", "male"), REVIEW, "multiple-matches", E, None),
    (Q("Jones", "Ann", "1980-01-01", "female"), REVIEW, "too-many-matches", E, None),
    (Q("Nobody", "Known", "1999-09-09", "male"), "no-match", "no-match", EFH, None),
    (Q("Smith", "Jane", None, "female"), REVIEW, "untraceable", (), None),
]


def resolver(stub: PdsStub, cache: PdsCache | None = None) -> IdentityResolver:
    return IdentityResolver(PdsFhirClient(StubTransport(stub), NoToken(), sleep=lambda _: None), cache)


@pytest.mark.parametrize(("query", "status", "reason", "tried", "number"), TRACES)
def test_trace_steps(
    stub: PdsStub,
    query: TraceQuery,
    status: str,
    reason: str | None,
    tried: tuple[str, ...],
    number: str | None,
) -> None:
    outcome = resolver(stub).trace(query, correlation_id="c")
    assert (outcome.status, outcome.reason, outcome.tried) == (status, reason, tried)
    assert (outcome.patient.nhs_number if outcome.patient else None) == number


def test_multiple_matches_keep_scores_not_a_pick(stub: PdsStub) -> None:
    outcome = resolver(stub).trace(
        TraceQuery("McMatch-Multiple", None, "1997-08-20", "male"), correlation_id="c"
    )
    assert outcome.patient is None and outcome.candidates == ("1.0000", "1.0000")


def test_trace_query_repr_shows_no_demographics() -> None:
    text = repr(TraceQuery("Smythe", "Janet", "2005-06-16", "female", "LS2 9ZZ"))
    assert not any(v in text for v in ("Smythe", "Janet", "2005", "LS2"))


def test_resolve_prefers_the_number_and_falls_back_to_a_trace(stub: PdsStub) -> None:
    r = resolver(stub)
    query = TraceQuery("Smith", "Jane", "2010-10-22", "female")
    assert r.resolve("9000000017", query, correlation_id="c").tried == ("retrieve",)
    unknown = r.resolve("9111231130", query, correlation_id="c")
    assert unknown.tried == ("retrieve", "exact", "fuzzy") and unknown.status == "matched"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_ttl_and_invalidation(stub: PdsStub) -> None:
    clock = Clock()
    r = resolver(stub, PdsCache(60, clock=clock))
    r.retrieve("9000000009", correlation_id="c")
    r.retrieve("9000000009", correlation_id="c")
    assert stub.requests == 1
    clock.now += 61
    r.retrieve("9000000009", correlation_id="c")
    assert stub.requests == 2
    r.invalidate("9000000009")
    r.retrieve("9000000009", correlation_id="c")
    assert stub.requests == 3


def test_superseded_lookup_is_cached_under_both_numbers_and_invalidated_together(stub: PdsStub) -> None:
    cache = PdsCache(60, clock=Clock())
    r = resolver(stub, cache)
    r.retrieve("9000000017", correlation_id="c")
    assert cache.get("9000000009") is not None
    cache.invalidate("9000000009")
    assert cache.get("9000000017") is None


def test_restricted_records_are_never_cached(stub: PdsStub) -> None:
    cache = PdsCache(3600, clock=Clock())
    r = resolver(stub, cache)
    r.retrieve("9000000025", correlation_id="c")
    r.retrieve("9000000025", correlation_id="c")
    assert stub.requests == 2 and len(cache) == 0
    restricted = PdsPatient("9000000025", "1", restricted=True)
    assert cache.put("9000000025", restricted) is False


def test_zero_ttl_disables_the_cache(stub: PdsStub) -> None:
    r = resolver(stub, PdsCache(0))
    r.retrieve("9000000009", correlation_id="c")
    r.retrieve("9000000009", correlation_id="c")
    assert stub.requests == 2
