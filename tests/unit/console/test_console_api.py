"""The operations console's core (:mod:`shared.console.app`) over the embedded defaults: estate, search,
journey, dead-letter replay; roles, CSRF, CSP and the audit record of every look at a message."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.audit.model import AuditRecord
from shared.audit.trail import AuditTrail
from shared.backbone.breaker import BreakerConfig, CircuitBreaker
from shared.backbone.errors import DownstreamRejected
from shared.backbone.runtime import Backbone, WriteBackOptions, build_backbone
from shared.console.app import CSP, CSRF_COOKIE, Console, ConsoleDeps, ConsoleRequest, ConsoleResponse
from shared.console.identity import LOCAL_ROLES, NOBODY, OPERATE, READ, Operator, resolve_operator
from shared.errors import TransientError
from shared.messaging.topology import SUB_WRITEBACK_FHIR, TOPIC_CLINICAL
from tests.unit.backbone import support as s

NHS = s.nhs_numbers(1)[0]
LOCAL = Operator("local:test", LOCAL_ROLES, local=True)
READER = Operator("reader@trust", frozenset({READ}))
OPERATOR = Operator("oncall@trust", frozenset({READ, OPERATE}))
HOST = "127.0.0.1:7071"


class Scenario:
    def __init__(
        self,
        container: Any,
        *,
        audit: AuditTrail | None = None,
        bus: Any = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.bus = bus or container.bus
        self.broken = True
        self.fake = s.FakeDownstream(
            script=lambda _k, _n: DownstreamRejected("fake", "AR", response="AR") if self.broken else None
        )
        self.container = container
        self.bb: Backbone = build_backbone(
            bus=self.bus,
            records=container.records,
            downstreams={SUB_WRITEBACK_FHIR: self.fake},
            options=WriteBackOptions(backoff_base_seconds=0.0),
        )
        self.event = s.event("CON1", nhs=NHS, visit="V1", correlation_id="con-1")
        self.console = Console(
            ConsoleDeps(
                bus=self.bus,
                records=container.records,
                audit=audit or container.audit,
                health=lambda: {"status": "healthy", "checks": {"messageBus": {"status": "healthy"}}},
                stuck_after=timedelta(hours=1),
                downstream_names=["fhir", "hl7v2"],
                secure_cookies=False,
                **({"clock": clock} if clock else {}),
            )
        )
        self.cookie = ""

    def dead_letter_one(self) -> None:
        j = self.bb.journal
        j.record("con-1", "received", channel="hl7v2", size=123)
        j.record("con-1", "acknowledged", code="AA", control_id="CON1")
        j.record("con-1", "mapped", event_kind="admission")
        j.record("con-1", "consumed", delivery_count=1)
        s.publish(self.bus, self.event)
        self.pump()
        self.bb.scan_dead_letters()

    def pump(self) -> None:
        s.pump(self.bus, SUB_WRITEBACK_FHIR, self.bb.subscriber(SUB_WRITEBACK_FHIR).handle)

    def call(
        self,
        method: str,
        path: str,
        operator: Operator = LOCAL,
        *,
        form: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> ConsoleResponse:
        all_headers = {"Host": HOST, **(headers or {})}
        if self.cookie:
            all_headers["Cookie"] = f"{CSRF_COOKIE}={self.cookie}"
        body = b""
        if form is not None:
            pairs = [(k, v) for k, vs in form.items() for v in (vs if isinstance(vs, list) else [vs])]
            if csrf:
                pairs.append(("csrf", self.cookie))
            from urllib.parse import urlencode

            body = urlencode(pairs).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
            if csrf:
                all_headers["X-TIE-CSRF"] = self.cookie
        response = self.console.handle(ConsoleRequest(method, path, all_headers, body, operator))
        cookie = response.headers.get("Set-Cookie", "")
        if cookie.startswith(CSRF_COOKIE + "="):
            self.cookie = cookie.split("=", 1)[1].split(";", 1)[0]
        return response

    def audit(self, interaction: str) -> list[AuditRecord]:
        entries = self.container.audit.log.entries()
        records = [AuditRecord.from_json(json.loads(e.body)) for e in entries]
        return [r for r in records if r.interaction == interaction]


def page(response: ConsoleResponse) -> str:
    return response.body.decode()


def data(response: ConsoleResponse) -> Any:
    assert response.content_type == "application/json", response.body[:200]
    return json.loads(response.body)


@pytest.fixture
def sc(container: Any) -> Scenario:
    return Scenario(container)


def test_estate_counts_dead_letters_inflight_and_breakers(sc: Scenario) -> None:
    sc.dead_letter_one()
    estate = data(sc.call("GET", "/api/estate"))
    assert estate["deadLetters"] == 1
    [fhir] = [x for x in estate["subscriptions"] if x["subscription"] == SUB_WRITEBACK_FHIR]
    assert fhir["deadLetter"] == 1 and fhir["topic"] == TOPIC_CLINICAL
    # dead-lettered for writeback-fhir: only writeback-hl7v2 still awaited
    assert estate["inflight"] == 1 and estate["stuck"] == 0 and estate["oldestStuck"] == []
    assert "Stuck messages" not in page(sc.call("GET", ""))
    from dataclasses import replace

    sc.console = Console(replace(sc.console.deps, stuck_after=timedelta(0)))  # everything in flight is stuck
    stuck = data(sc.call("GET", "/api/estate"))
    assert stuck["stuck"] == 1 and stuck["stuckBySubscriber"] == {"writeback-hl7v2": 1}
    assert [(x["correlationId"], list(x["waitingFor"])) for x in stuck["oldestStuck"]] == [
        ("con-1", ["writeback-hl7v2"])
    ]
    assert 'href="/api/console/messages/con-1"' in page(sc.call("GET", ""))
    assert {d["name"]: d["breaker"] for d in estate["downstreams"]} == {"fhir": "closed", "hl7v2": "closed"}
    CircuitBreaker(sc.container.records, "fake", BreakerConfig(failure_threshold=1)).record_failure(
        "unavailable"
    )
    [fake] = [d for d in data(sc.call("GET", "/api/estate"))["downstreams"] if d["name"] == "fake"]
    assert fake["breaker"] == "open" and fake["lastError"] == "unavailable" and fake["openUntil"]
    assert estate["reconciliation"] is None and estate["certificates"] is None
    html = page(sc.call("GET", ""))
    assert re.search(r'id="tile-deadletters"><span class="tile-value">1<', html)
    assert re.search(r'id="tile-breakers"><span class="tile-value">1<', html)
    assert '<span class="state state-open">open</span>' in html


def test_search_by_correlation_and_control_id_is_posted_and_audited(sc: Scenario) -> None:
    sc.dead_letter_one()
    sc.call("GET", "/messages")  # sets the CSRF cookie
    assert sc.cookie
    found = data(sc.call("POST", "/api/search", json_body={"correlationId": "con-1"}))
    assert found["results"] == [
        {"correlationId": "con-1", "sender": "", "controlId": "", "ack": "", "outcome": "", "at": None}
    ]
    html = page(sc.call("POST", "/messages", form={"correlation_id": "nobody"}))
    assert "No message matches." in html
    bad = sc.call("POST", "/messages", form={"correlation_id": "con-1", "control_id": "PAS:1"})
    assert bad.status == 400 and "one of them" in page(bad)
    bad_control = sc.call("POST", "/api/search", json_body={"controlId": "no-colon"})
    assert bad_control.status == 400 and data(bad_control)["error"]["code"] == "bad_request"
    searches = sc.audit("console-search")
    assert [r.parameters for r in searches] == [("correlation_id",), ("correlation_id",)]
    assert searches[0].agent.id == "local:test" and searches[0].correlation_id == "con-1"
    assert all("nobody" not in json.dumps(r.to_json()) for r in searches)  # names, never values


def test_search_finds_by_control_id(sc: Scenario) -> None:
    from shared.storage.keys import safe_key
    from shared.storage.names import TABLE_HL7_OUTCOMES

    sc.container.records.upsert(
        TABLE_HL7_OUTCOMES,
        safe_key("PAS|RGT01"),
        safe_key("CTL42"),
        {"correlation_id": "con-42", "code": "AA", "outcome": "accepted", "at": "2026-12-07T03:00:00+00:00"},
    )
    sc.call("GET", "/messages")
    [hit] = data(sc.call("POST", "/api/search", json_body={"controlId": "PAS:CTL42"}))["results"]
    assert hit == {
        "correlationId": "con-42",
        "sender": "PAS/RGT01",
        "controlId": "CTL42",
        "ack": "AA",
        "outcome": "accepted",
        "at": "2026-12-07T03:00:00+00:00",
    }
    html = page(sc.call("POST", "/messages", form={"control_id": "PAS/RGT01:CTL42"}))
    assert 'href="/api/console/messages/con-42"' in html


def test_journey_shows_stages_ack_outcomes_and_is_audited(sc: Scenario) -> None:
    sc.dead_letter_one()
    j = data(sc.call("GET", "/api/messages/con-1"))
    stages = [x["stage"] for x in j["stages"]]
    for stage in ("received", "acknowledged", "mapped", "consumed", "failed", "dead-lettered"):
        assert stage in stages
    assert j["ack"] == "AA" and j["finished"] is False and list(j["waitingFor"]) == ["writeback-hl7v2"]
    assert j["outcomes"][SUB_WRITEBACK_FHIR]["stage"] == "dead-lettered"
    html = page(sc.call("GET", "/messages/con-1"))
    assert '<span class="stage">dead-lettered</span>' in html and "in flight" in html
    [view, _] = sc.audit("console-journey")
    assert view.correlation_id == "con-1" and view.action == "R" and view.agent.id == "local:test"
    missing = sc.call("GET", "/api/messages/nobody")
    assert missing.status == 404 and len(sc.audit("console-journey")) == 2  # nothing shown, nothing audited


def test_journey_fails_closed_when_the_audit_cannot_be_written(container: Any) -> None:
    class Broken:
        log = container.audit.log

        def record(self, **_: Any) -> None:
            raise TransientError("audit log unavailable")

    sc = Scenario(container, audit=Broken())  # type: ignore[arg-type]
    sc.dead_letter_one()
    with pytest.raises(TransientError):  # the HTTP adapter answers 503; no journey leaves the app
        sc.call("GET", "/api/messages/con-1")


def test_replay_needs_operate_csrf_and_confirmation_and_is_idempotent(sc: Scenario) -> None:
    sc.dead_letter_one()
    sc.call("GET", "/deadletters")
    [letter] = data(sc.call("GET", "/api/deadletters"))["deadLetters"]
    name = f"{TOPIC_CLINICAL}|{SUB_WRITEBACK_FHIR}|{letter['sequence']}"

    reader_page = page(sc.call("GET", "/deadletters", READER))
    assert (
        "Replaying and purging need the Operate role." in reader_page and 'name="letter"' not in reader_page
    )
    assert (
        sc.call("POST", "/deadletters/replay", READER, form={"letter": name, "confirm": "yes"}).status == 403
    )
    assert (
        sc.call("POST", "/deadletters/replay", form={"letter": name, "confirm": "yes"}, csrf=False).status
        == 403
    )
    foreign = sc.call(
        "POST",
        "/deadletters/replay",
        form={"letter": name, "confirm": "yes"},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status == 403
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"}):
        refused = sc.call(
            "POST", "/deadletters/replay", form={"letter": name, "confirm": "yes"}, headers=headers
        )
        assert refused.status == 403, headers

    confirm = sc.call("POST", "/deadletters/replay", form={"letter": name})
    assert confirm.status == 200 and 'id="confirm-replay"' in page(confirm)
    assert len(data(sc.call("GET", "/api/deadletters"))["deadLetters"]) == 1  # nothing replayed yet
    assert sc.call("POST", "/api/deadletters/replay", json_body={"letters": [name]}).status == 400

    sc.broken = False
    done = sc.call("POST", "/deadletters/replay", form={"letter": name, "confirm": "yes"})
    assert "Replayed 1 of 1" in page(done)
    assert data(sc.call("GET", "/api/deadletters"))["deadLetters"] == []
    again = data(sc.call("POST", "/api/deadletters/replay", json_body={"letters": [name], "confirm": True}))
    assert again == {"requested": 1, "replayed": 0}  # a double submit replays nothing twice
    sc.pump()
    assert sc.fake.effects[sc.event.key.value] == 1
    stages = [x["stage"] for x in data(sc.call("GET", "/api/messages/con-1"))["stages"]]
    assert stages.count("replayed") == 1 and stages[-1] == "written-back"
    audits = sc.audit("console-dlq-replay")
    assert [r.detail["present"] for r in audits] == [1, 0]
    assert audits[0].entities[0].id == letter["messageId"] and audits[0].agent.id == "local:test"


def test_nobody_sees_nothing_and_every_page_is_locked_down(sc: Scenario) -> None:
    sc.dead_letter_one()
    for path in ("", "/messages", "/messages/con-1", "/deadletters", "/health", "/api/estate"):
        denied = sc.call("GET", path, NOBODY)
        assert denied.status == 403, path
        assert "con-1" not in page(denied)
    pages: list[str] = []
    for path in ("", "/messages", "/messages/con-1", "/deadletters", "/health", "/no-such-page"):
        response = sc.call("GET", path)
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        pages.append(page(response))
    for html in pages:
        assert NHS not in html
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
        assert " style=" not in html and "<style" not in html and " on" + "click=" not in html
    assert "Local operator." in pages[0]
    assert "Local operator." not in page(sc.call("GET", "", OPERATOR))


def test_static_files_are_a_fixed_list(container: Any) -> None:
    from dataclasses import replace

    from functions.console import STATIC_DIR

    sc = Scenario(container)
    sc.console = Console(replace(sc.console.deps, static_dir=STATIC_DIR))
    css = sc.call("GET", "/static/console.css", NOBODY)
    assert css.status == 200 and css.content_type.startswith("text/css") and b"--blue" in css.body
    js = sc.call("GET", "/static/console.js", NOBODY)
    assert js.status == 200 and js.content_type.startswith("text/javascript")
    for name in ("../app.py", "..%2Fconsole.py", "console.css.bak", ""):
        assert sc.call("GET", "/static/" + name).status == 404, name


@pytest.mark.parametrize(
    ("gateway", "headers", "local", "expected"),
    [
        (True, {"X-TIE-Console-User": "a@trust", "X-TIE-Console-Roles": "TIE.Console.Read"}, False, {READ}),
        (
            True,
            {"X-TIE-Console-User": "a@trust", "X-TIE-Console-Roles": "Admin, TIE.Console.Operate"},
            True,
            {OPERATE},
        ),
        (True, {"X-TIE-Console-Roles": "TIE.Console.Read"}, True, set()),  # no user: nobody
        (True, {}, True, set()),  # behind the gateway the local operator does not exist
        (False, {"X-TIE-Console-User": "a", "X-TIE-Console-Roles": "TIE.Console.Operate"}, False, set()),
        (False, {"Host": "127.0.0.1:7071"}, True, set(LOCAL_ROLES)),
        (False, {"Host": "localhost:7071"}, True, set(LOCAL_ROLES)),
        (False, {"Host": "[::1]:7071"}, True, set(LOCAL_ROLES)),
        (False, {}, True, set()),  # no Host: not provably local
        (False, {"Host": "192.168.1.20:7071"}, True, set()),  # tie run --host 0.0.0.0 reached from the LAN
        (False, {"Host": "attacker.example:7071"}, True, set()),  # a DNS-rebound name
        (False, {"Host": "127.0.0.1.attacker.example"}, True, set()),
    ],
)
def test_operator_comes_from_the_gateway_or_the_local_host_only(
    gateway: bool, headers: dict[str, str], local: bool, expected: set[str]
) -> None:
    lookup: Callable[[str], str | None] = lambda name: headers.get(name)  # noqa: E731
    assert resolve_operator(lookup, behind_gateway=gateway, local_host=local).roles == expected


def test_dashboard_shows_the_last_reconciliation_run(container: Any) -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    from shared.console.reconciliation import RunHistorySource
    from shared.reconcile.store import RUNS, _row
    from shared.storage.names import TABLE_RECONCILE

    sc = Scenario(container)
    sc.console = Console(replace(sc.console.deps, reconciliation=RunHistorySource(container.records)))
    assert data(sc.call("GET", "/api/estate"))["reconciliation"] is None
    assert "No reconciliation has run" in page(sc.call("GET", ""))
    started = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    interfaces = [
        {"interface": "inbound PAS ADT^A01", "variance": 0, "byCategory": {}},
        {"interface": "outbound fhir", "variance": 2, "byCategory": {"never-completed": 1, "stuck": 1}},
    ]
    container.records.upsert(
        TABLE_RECONCILE,
        RUNS,
        _row(started, "run-1"),
        {"started": started.isoformat(), "interfaces": interfaces},
    )
    recon = data(sc.call("GET", "/api/estate"))["reconciliation"]
    assert recon == {
        "at": started.isoformat(),
        "variances": [{"check": "outbound fhir", "count": 2, "detail": "never-completed=1 stuck=1"}],
    }
    assert "never-completed=1 stuck=1" in page(sc.call("GET", ""))


def test_dashboard_shows_certificate_days_left_or_why_it_cannot(container: Any) -> None:
    from dataclasses import replace

    from shared.console.readmodels import Certificate
    from shared.credentials.errors import CredentialUnavailable

    sc = Scenario(container)
    certs = [
        Certificate("mllp-client", 12, "30d"),
        Certificate("fhir-client", None, None, "credential-not-found"),
    ]
    sc.console = Console(replace(sc.console.deps, certificates=lambda: certs))
    listed = data(sc.call("GET", "/api/estate"))["certificates"]
    assert listed == [
        {"name": "mllp-client", "daysLeft": 12, "band": "30d", "error": None},
        {"name": "fhir-client", "daysLeft": None, "band": None, "error": "credential-not-found"},
    ]

    def unreadable() -> list[Certificate]:
        raise CredentialUnavailable("(store)", "unreachable")

    sc.console = Console(replace(sc.console.deps, certificates=unreadable))
    estate = data(sc.call("GET", "/api/estate"))
    assert estate["certificates"] is None and estate["unavailable"] == {
        "certificates": CredentialUnavailable.code
    }
    assert "Certificates unavailable" in page(sc.call("GET", ""))


def test_purge_needs_operate_a_whole_day_and_confirmation(container: Any, tmp_path: Any) -> None:
    from shared.adapters.embedded.sqlite_bus import SqliteBus

    clock = s.ManualClock(datetime.now(UTC))
    bus = SqliteBus(tmp_path / "aged-bus.sqlite3", clock=clock)
    try:
        sc = Scenario(container, bus=bus, clock=clock)
        sc.dead_letter_one()
        sc.call("GET", "/deadletters")
        form = {"older_than_days": "2", "confirm": "yes"}
        assert sc.call("POST", "/deadletters/purge", READER, form=form).status == 403
        for days in ("0", "-1", "1.5", "", "99999"):
            assert sc.call("POST", "/deadletters/purge", form={"older_than_days": days}).status == 400, days
        clock.advance(timedelta(days=1))
        confirm = sc.call("POST", "/deadletters/purge", form={"older_than_days": "2"})
        assert "Delete 0 dead letter(s) older than 2 day(s)" in page(confirm)
        assert (
            data(sc.call("POST", "/api/deadletters/purge", json_body={"olderThanDays": 2, "confirm": True}))[
                "purged"
            ]
            == 0
        )
        clock.advance(timedelta(days=2))
        confirm = sc.call("POST", "/deadletters/purge", form={"older_than_days": "2"})
        assert 'id="confirm-purge"' in page(confirm) and "Delete 1 dead letter(s)" in page(confirm)
        assert len(data(sc.call("GET", "/api/deadletters"))["deadLetters"]) == 1  # not before confirming
        done = sc.call("POST", "/deadletters/purge", form=form)
        assert "Purged 1 dead letter(s) older than 2 day(s)." in page(done)
        assert data(sc.call("GET", "/api/deadletters"))["deadLetters"] == []
        audits = sc.audit("console-dlq-purge")
        assert [(r.action, r.detail["due"]) for r in audits] == [("D", 0), ("D", 1)]
    finally:
        bus.close()


def test_traffic_of_the_last_hour_from_the_journal(container: Any) -> None:
    from shared.console.readmodels import traffic
    from shared.journal import Journal

    now = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
    at = [now]
    journal = Journal(container.records, clock=lambda: at[0])

    def record(minutes_ago: float, cid: str, stage: str, **attrs: Any) -> None:
        at[0] = now - timedelta(minutes=minutes_ago)
        journal.record(cid, stage, **attrs)

    record(120, "old", "received")  # outside the window
    record(50, "m1", "received")
    record(50, "m1", "acknowledged", code="AA")
    record(50 - 0.1 / 60, "m1", "written-back", subscriber="writeback-fhir")  # +100 ms
    record(10, "m2", "received")
    record(10, "m2", "acknowledged", code="AE")
    record(10 - 0.3 / 60, "m2", "written-back", subscriber="writeback-fhir")  # +300 ms
    record(10, "m3", "received")
    record(10, "m3", "rejected", code="AR")
    t = traffic(container.records, now=now)
    assert t.received == 3 and len(t.per_minute) == 60
    assert t.per_minute[10] == 1 and t.per_minute[50] == 2  # minute buckets from since = now - 1 h
    assert t.acks == {"AA": 1, "AE": 1, "rejected": 1}
    assert (t.latency_p50_ms, t.latency_p95_ms, t.finished) == (100.0, 300.0, 2)
    assert t.truncated is False
    from shared.console.pages import chart

    html = chart(t)
    assert html.count('<rect class="bar"') == 60 and "3 message(s) received in the last hour; peak 2" in html
    assert "p50 100.0 ms, p95 300.0 ms over 2 finished" in html
