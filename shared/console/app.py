"""The console's request handler: HTML pages and a JSON API over the read models, with roles, CSRF
protection, a strict Content-Security-Policy and an audit record for every look at a message.

Paths are relative to the console's base (``/api/console`` on the function app):

=========================================  ====================================================  =========
``GET  /``                                 dashboard (the estate; ``console.js`` refreshes it)    Read
``GET  /messages``                         search form                                           Read
``POST /messages``                         search by correlation id or ``SENDER:ID`` (audited)    Read
``GET  /messages/{correlation id}``        the journey (audited)                                  Read
``GET  /deadletters``                      dead letters of every subscription                     Read
``POST /deadletters/replay``               confirmation page, then (``confirm=yes``) the replay   Operate
``POST /deadletters/purge``                older than N days (>= 1): confirmation, then purge     Operate
``GET  /health``                           the dependency checks of ``/api/health``, for humans   Read
``GET  /api/estate``                       JSON                                                   Read
``POST /api/search``                       JSON ``{"correlationId"| "controlId"}`` (audited)      Read
``GET  /api/messages/{correlation id}``    JSON journey (audited)                                 Read
``GET  /api/deadletters``                  JSON                                                   Read
``POST /api/deadletters/replay``           JSON ``{"letters": [...], "confirm": true}``           Operate
``POST /api/deadletters/purge``            JSON ``{"olderThanDays": N, "confirm": true}``         Operate
``GET  /static/{name}``                    the console's CSS and script (fixed list)              -
=========================================  ====================================================  =========

Every state-changing or searching POST carries the CSRF token of the ``tie_console_csrf`` cookie (form
field ``csrf`` or header ``X-TIE-CSRF``: double submit; the cookie is ``SameSite=Strict``) and, when the
browser sends them, ``Sec-Fetch-Site: same-origin`` and an ``Origin`` equal to the request's host.
Replay is idempotent: a sequence number no longer in the dead-letter queue is skipped, and the
write-back effects are guarded by the event ledger.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from shared.audit.model import ACCESS, OPERATOR, SUCCESS, Agent, AuditRecord, Entity
from shared.audit.trail import AuditTrail
from shared.backbone import deadletter
from shared.console import pages
from shared.console.identity import OPERATE, READ, Operator
from shared.console.readmodels import (
    Certificate,
    InvalidQuery,
    ReconciliationSource,
    dead_letters,
    estate,
    find_messages,
    journey,
)
from shared.journal import Journal
from shared.messaging.ports import MessageBus
from shared.storage.ports import RecordStore

CSRF_COOKIE: Final = "tie_console_csrf"
CSRF_HEADER: Final = "X-TIE-CSRF"
SOURCE: Final = "console"
MAX_FORM_BYTES: Final = 64 * 1024
MAX_REPLAY: Final = 250
#: Purge bounds: at least a day (a fresh dead letter is never one click from deletion), at most ten years.
MIN_PURGE_DAYS: Final = 1
MAX_PURGE_DAYS: Final = 3650

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_FILES: Final = {"console.css": "text/css", "console.js": "text/javascript"}


@dataclass(frozen=True, slots=True)
class ConsoleRequest:
    method: str
    #: The path below the console's base, e.g. ``/messages``; ``""`` or ``/`` for the dashboard.
    path: str
    headers: Mapping[str, str]
    body: bytes
    operator: Operator

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    def cookie(self, name: str) -> str | None:
        for part in (self.header("Cookie") or "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None

    def form(self) -> dict[str, list[str]]:
        ctype = (self.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/json":
            try:
                data = json.loads(self.body or b"{}")
            except ValueError:
                raise InvalidQuery("the request body is not JSON") from None
            if not isinstance(data, dict):
                raise InvalidQuery("the request body must be a JSON object")
            return {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in data.items()}
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)


@dataclass(slots=True)
class ConsoleResponse:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConsoleDeps:
    bus: MessageBus
    records: RecordStore
    audit: AuditTrail
    health: Callable[[], Mapping[str, Any]]
    stuck_after: timedelta
    downstream_names: Sequence[str]
    base: str = "/api/console"
    static_dir: Path | None = None
    certificates: Callable[[], Sequence[Certificate]] | None = None
    #: Extension point for ``shared/reconcile``: the last run's variances (None: not wired yet).
    reconciliation: ReconciliationSource | None = None
    secure_cookies: bool = True
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


class Forbidden(Exception):
    pass


def _first(form: Mapping[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


def _letters(values: Sequence[str]) -> list[tuple[str, str, int]]:
    """``topic|subscription|sequence`` values -> tuples (malformed ones refused, not guessed)."""
    out: list[tuple[str, str, int]] = []
    for value in values:
        topic, subscription, sequence = [*value.split("|"), "", "", ""][:3]
        if not topic or not subscription or not sequence.isdigit():
            raise InvalidQuery("a dead letter is named topic|subscription|sequence")
        out.append((topic, subscription, int(sequence)))
    if len(out) > MAX_REPLAY:
        raise InvalidQuery(f"at most {MAX_REPLAY} dead letters per replay")
    return sorted(set(out))


class Console:
    def __init__(self, deps: ConsoleDeps) -> None:
        self.deps = deps

    # -- plumbing --------------------------------------------------------------------------------------

    def handle(self, request: ConsoleRequest) -> ConsoleResponse:
        path = "/" + request.path.strip("/")
        if path.startswith("/static/"):
            return self._static(path[len("/static/") :])
        csrf, new_cookie = self._csrf_token(request)
        try:
            if not request.operator.may(READ):
                raise Forbidden
            response = self._route(request, path, csrf)
        except Forbidden:
            response = self._error(request, path, 403, "You do not have a role that allows this.")
        except InvalidQuery as exc:
            response = self._error(request, path, 400, str(exc))
        response.headers.update(SECURITY_HEADERS)
        if new_cookie:
            secure = "; Secure" if self.deps.secure_cookies else ""
            response.headers["Set-Cookie"] = (
                f"{CSRF_COOKIE}={csrf}; Path={self.deps.base}; HttpOnly; SameSite=Strict{secure}"
            )
        return response

    def _csrf_token(self, request: ConsoleRequest) -> tuple[str, bool]:
        token = request.cookie(CSRF_COOKIE) or ""
        if len(token) == 43 and token.replace("-", "").replace("_", "").isalnum():
            return token, False
        return secrets.token_urlsafe(32), True

    def _check_post(self, request: ConsoleRequest, form: Mapping[str, list[str]]) -> None:
        """Double-submit CSRF check and same origin; raises Forbidden."""
        cookie = request.cookie(CSRF_COOKIE) or ""
        presented = request.header(CSRF_HEADER) or _first(form, "csrf")
        if not cookie or not presented or not hmac.compare_digest(cookie.encode(), presented.encode()):
            raise Forbidden
        # Same origin: Fetch metadata when the browser sends it; Origin otherwise ("null" is what a form
        # post from a no-referrer context sends: believed only with Sec-Fetch-Site: same-origin).
        site = request.header("Sec-Fetch-Site")
        if site is not None and site != "same-origin":
            raise Forbidden
        origin = request.header("Origin")
        if origin == "null" and site != "same-origin":
            raise Forbidden
        if (
            origin
            and origin != "null"
            and urlsplit(origin).netloc.lower() != (request.header("Host") or "").lower()
        ):
            raise Forbidden

    def _route(self, request: ConsoleRequest, path: str, csrf: str) -> ConsoleResponse:
        method = request.method.upper()
        api = path.startswith("/api/")
        route = path[len("/api") :] if api else path
        if method == "POST":
            form = request.form()
            self._check_post(request, form)
            if (route == "/messages" and not api) or (route == "/search" and api):
                return self._search(request, form, csrf, api=api)
            if route == "/deadletters/replay":
                return self._replay(request, form, csrf, api=api)
            if route == "/deadletters/purge":
                return self._purge(request, form, csrf, api=api)
            return self._not_found(request, api)
        if method != "GET":
            return self._not_found(request, api)
        if route in ("/", "/estate"):
            if api:
                return self._json(self._estate().to_json())
            if route == "/":
                return self._page(
                    request,
                    "Dashboard",
                    "",
                    pages.dashboard(self.deps.base, self._estate()),
                    page="dashboard",
                )
        if route == "/messages" and not api:
            return self._page(request, "Find a message", "/messages", pages.search_form(self.deps.base, csrf))
        if route.startswith("/messages/"):
            return self._journey(request, unquote(route[len("/messages/") :]), api=api)
        if route == "/deadletters":
            letters = dead_letters(self.deps.bus, self.deps.records)
            if api:
                return self._json({"deadLetters": letters})
            return self._deadletters(request, csrf, letters)
        if route == "/health" and not api:
            return self._page(request, "Health", "/health", pages.health_page(self.deps.health()))
        return self._not_found(request, api)

    # -- pages and answers -----------------------------------------------------------------------------

    def _estate(self) -> Any:
        d = self.deps
        return estate(
            d.bus,
            d.records,
            Journal(d.records),
            now=d.clock(),
            stuck_after=d.stuck_after,
            downstream_names=d.downstream_names,
            certificates=d.certificates,
            reconciliation=d.reconciliation,
        )

    def _agent(self, operator: Operator) -> Agent:
        return Agent("user", operator.id, verified=operator.verified)

    def _patients_of(self, correlation_id: str) -> list[str]:
        """Whose data a message is (the pseudonymous tokens the audit already holds for it)."""
        found: set[str] = set()
        for entry in self.deps.audit.log.search(correlation_id=correlation_id, limit=1000):
            found.update(AuditRecord.from_json(json.loads(entry.body)).patients)
        return sorted(found)

    def _search(
        self, request: ConsoleRequest, form: Mapping[str, list[str]], csrf: str, *, api: bool
    ) -> ConsoleResponse:
        correlation_id = _first(form, "correlation_id") or _first(form, "correlationId")
        control_id = _first(form, "control_id") or _first(form, "controlId")
        try:
            found = find_messages(
                Journal(self.deps.records),
                self.deps.records,
                correlation_id=correlation_id,
                control_id=control_id,
            )
        except InvalidQuery as exc:
            if api:
                raise
            body = pages.search_form(
                self.deps.base, csrf, correlation_id=correlation_id, control_id=control_id, error=str(exc)
            )
            return self._page(request, "Find a message", "/messages", body, status=400)
        # Audited before anything is shown: parameter names only, never the values searched for.
        self.deps.audit.record(
            category=OPERATOR,
            action="E",
            interaction="console-search",
            outcome=SUCCESS,
            source=SOURCE,
            agent=self._agent(request.operator),
            correlation_id=found[0].correlation_id if len(found) == 1 else "",
            parameters=["correlation_id"] if correlation_id.strip() else ["control_id"],
            detail={"returned": len(found)},
        )
        if api:
            return self._json({"results": [f.to_json() for f in found]})
        body = pages.search_form(self.deps.base, csrf, correlation_id=correlation_id, control_id=control_id)
        return self._page(request, "Find a message", "/messages", body + pages.results(self.deps.base, found))

    def _journey(self, request: ConsoleRequest, correlation_id: str, *, api: bool) -> ConsoleResponse:
        j = journey(Journal(self.deps.records), correlation_id)
        if j is None:
            if api:
                return self._json({"error": {"code": "not_found", "message": "No such correlation id."}}, 404)
            return self._page(
                request,
                "Message not found",
                "/messages",
                pages.message_page("No such correlation id."),
                status=404,
            )
        self.deps.audit.record(
            category=ACCESS,
            action="R",
            interaction="console-journey",
            outcome=SUCCESS,
            source=SOURCE,
            agent=self._agent(request.operator),
            correlation_id=correlation_id,
            patients=self._patients_of(correlation_id),
        )
        if api:
            return self._json(j.to_json())
        return self._page(
            request,
            "Message journey",
            "/messages",
            pages.journey_page(self.deps.base, j, self.deps.clock()),
            page="journey",
        )

    def _deadletters(
        self, request: ConsoleRequest, csrf: str, letters: Sequence[Mapping[str, Any]], notice: str = ""
    ) -> ConsoleResponse:
        body = pages.deadletters_page(
            self.deps.base,
            letters,
            csrf,
            self.deps.clock(),
            may_operate=request.operator.may(OPERATE),
            notice=notice,
        )
        return self._page(request, "Dead letters", "/deadletters", body, page="deadletters")

    def _replay(
        self, request: ConsoleRequest, form: Mapping[str, list[str]], csrf: str, *, api: bool
    ) -> ConsoleResponse:
        if not request.operator.may(OPERATE):
            raise Forbidden
        chosen = _letters(form.get("letter") or form.get("letters") or [])
        if not chosen:
            raise InvalidQuery("choose at least one dead letter")
        confirmed = _first(form, "confirm").lower() in ("yes", "true")
        if not confirmed:
            if api:
                raise InvalidQuery("a replay must be confirmed (confirm: true)")
            body = pages.confirm_replay_page(self.deps.base, chosen, csrf)
            return self._page(request, "Confirm replay", "/deadletters", body)
        replayed = self.replay(request.operator, chosen)
        if api:
            return self._json({"requested": len(chosen), "replayed": replayed})
        notice = f"Replayed {replayed} of {len(chosen)} selected dead letter(s)."
        if replayed < len(chosen):
            notice += " The others were no longer in the dead-letter queue (already replayed or purged)."
        return self._deadletters(request, csrf, dead_letters(self.deps.bus, self.deps.records), notice)

    def _purge(
        self, request: ConsoleRequest, form: Mapping[str, list[str]], csrf: str, *, api: bool
    ) -> ConsoleResponse:
        if not request.operator.may(OPERATE):
            raise Forbidden
        text = (_first(form, "older_than_days") or _first(form, "olderThanDays")).strip()
        if not text.isdigit() or not MIN_PURGE_DAYS <= int(text) <= MAX_PURGE_DAYS:
            raise InvalidQuery(f"older than: a whole number of days, {MIN_PURGE_DAYS} to {MAX_PURGE_DAYS}")
        days = int(text)
        older_than = timedelta(days=days)
        now = self.deps.clock()
        letters = dead_letters(self.deps.bus, self.deps.records)
        due = [
            d
            for d in letters
            if now - datetime.fromisoformat(str(d.get("deadLettered") or d["enqueued"])) >= older_than
        ]
        if _first(form, "confirm").lower() not in ("yes", "true"):
            if api:
                raise InvalidQuery("a purge must be confirmed (confirm: true)")
            body = pages.confirm_purge_page(self.deps.base, days, len(due), csrf)
            return self._page(request, "Confirm purge", "/deadletters", body)
        self.deps.audit.record(
            category=OPERATOR,
            action="D",
            interaction="console-dlq-purge",
            outcome=SUCCESS,
            source=SOURCE,
            agent=self._agent(request.operator),
            entities=[Entity("Message", str(d["messageId"])) for d in due],
            detail={"older_than_days": days, "due": len(due)},
        )
        purged = deadletter.purge(self.deps.bus, self.deps.records, older_than=older_than)
        total = sum(purged.values())
        if api:
            return self._json({"olderThanDays": days, "purged": total, "bySubscription": purged})
        notice = f"Purged {total} dead letter(s) older than {days} day(s)."
        return self._deadletters(request, csrf, dead_letters(self.deps.bus, self.deps.records), notice)

    def replay(self, operator: Operator, chosen: Sequence[tuple[str, str, int]]) -> int:
        """Replay the chosen dead letters still present (audited first: fails closed)."""
        by_sub: dict[tuple[str, str], list[int]] = {}
        for topic, subscription, sequence in chosen:
            by_sub.setdefault((topic, subscription), []).append(sequence)
        present = {
            (d.topic, d.subscription, d.sequence_number): d
            for (topic, subscription) in by_sub
            for d in deadletter.list_dead_letters(
                self.deps.bus, self.deps.records, topic=topic, subscription=subscription
            )
        }
        todo = [present[c] for c in chosen if c in present]
        correlations = {d.correlation_id for d in todo if d.correlation_id}
        self.deps.audit.record(
            category=OPERATOR,
            action="E",
            interaction="console-dlq-replay",
            outcome=SUCCESS,
            source=SOURCE,
            agent=self._agent(operator),
            correlation_id=next(iter(correlations)) if len(correlations) == 1 else "",
            entities=[Entity("Message", d.message_id) for d in todo],
            detail={"requested": len(chosen), "present": len(todo)},
        )
        journal = Journal(self.deps.records)
        count = 0
        for (topic, subscription), sequences in sorted(by_sub.items()):
            wanted = [n for n in sequences if (topic, subscription, n) in present]
            if wanted:
                count += deadletter.replay(
                    self.deps.bus, self.deps.records, journal, topic, subscription, sequence_numbers=wanted
                )
        return count

    # -- responses -------------------------------------------------------------------------------------

    def _page(
        self,
        request: ConsoleRequest,
        title: str,
        active: str,
        body: str,
        *,
        status: int = 200,
        page: str = "",
    ) -> ConsoleResponse:
        html = pages.layout(self.deps.base, title, active, request.operator, body, page=page)
        return ConsoleResponse(status, html.encode("utf-8"), "text/html; charset=utf-8")

    def _json(self, payload: Any, status: int = 200) -> ConsoleResponse:
        return ConsoleResponse(
            status, json.dumps(payload, separators=(",", ":")).encode(), "application/json"
        )

    def _error(self, request: ConsoleRequest, path: str, status: int, text: str) -> ConsoleResponse:
        if path.startswith("/api/"):
            code = "forbidden" if status == 403 else "bad_request"
            return self._json({"error": {"code": code, "message": text}}, status)
        title = "Not allowed" if status == 403 else "Cannot do that"
        return self._page(request, title, "", pages.message_page(text), status=status)

    def _not_found(self, request: ConsoleRequest, api: bool) -> ConsoleResponse:
        if api:
            return self._json({"error": {"code": "not_found", "message": "No such console page."}}, 404)
        return self._page(
            request, "Page not found", "", pages.message_page("No such console page."), status=404
        )

    def _static(self, name: str) -> ConsoleResponse:
        ctype = STATIC_FILES.get(name)
        if ctype is None or self.deps.static_dir is None:
            return ConsoleResponse(404, b"not found", "text/plain", dict(SECURITY_HEADERS))
        data = (self.deps.static_dir / name).read_bytes()
        headers = dict(SECURITY_HEADERS)
        headers["Cache-Control"] = "no-cache"
        return ConsoleResponse(200, data, f"{ctype}; charset=utf-8", headers)
