"""A small FHIR R4 REST server for tests: aiohttp on 127.0.0.1 in a background thread, delegating to any
:class:`~shared.fhirstore.ports.FhirRepository` (normally the SQLite store), with fault injection.

It exists so the HTTP adapter (:mod:`shared.adapters.azure.ahds_fhir`) can be tested over a real HTTP
round trip before the project's own FHIR API exists; tests that use it only need ``server.base_url``,
so they can later be pointed at the real local host instead.

FHIR behaviour implemented: read / vread / create (``If-None-Exist``) / update (``If-Match``) /
conditional update / delete / instance and type history / search (GET and ``POST _search``; paging with
``_offset`` next links; include entries) / transaction and batch (``POST /``) / ``metadata``. Errors are
OperationOutcomes with the repository error's status. Bundles larger than ``max_bundle_entries`` are
rejected with 413, like Azure Health Data Services.

Fault injection: ``server.inject(Fault(...))`` makes the next matching request(s) answer with a status
(optionally a body and headers) or be delayed first. ``server.requests`` records method, path+query and
the headers tests care about.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from shared.fhirstore.bundle import history_bundle
from shared.fhirstore.errors import FhirStoreError, InvalidResource
from shared.fhirstore.ports import FhirRepository, format_instant
from shared.fhirstore.search import parse_query_string

FHIR_JSON = "application/fhir+json"
RECORDED_HEADERS = ("Authorization", "If-Match", "If-None-Exist", "Prefer", "Content-Type")


@dataclass
class Fault:
    """Answer ``status`` (after ``delay`` seconds) to the next ``times`` requests matching ``match``.

    ``status=None`` only delays, then serves the request normally. ``hold``: before answering, wait until
    the test sets this event (a request held past any client timeout without a wall-clock race).
    """

    status: int | None = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    times: int = 1
    match: Callable[[web.Request], bool] | None = None
    hold: threading.Event | None = None


@dataclass
class RecordedRequest:
    method: str
    path_qs: str
    headers: dict[str, str]


class FhirTestServer:
    def __init__(
        self,
        repo: FhirRepository,
        *,
        prefix: str = "/fhir",
        max_bundle_entries: int = 500,
        required_token: str | None = None,
        threaded_creates: bool = False,
    ) -> None:
        """``threaded_creates``: run creates in a worker thread, so a create the store holds (a test's
        gate) does not stop the server from answering other requests meanwhile."""
        self.repo = repo
        self.threaded_creates = threaded_creates
        self.prefix = prefix
        self.max_bundle_entries = max_bundle_entries
        self.required_token = required_token
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def count(self, method: str, path_part: str = "") -> int:
        return sum(1 for r in self.requests if r.method == method and path_part in r.path_qs)

    # -- lifecycle --------------------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[FhirTestServer]:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        thread = threading.Thread(target=run, daemon=True, name="fhir-test-server")
        thread.start()
        assert started.wait(10), "FHIR test server did not start"
        if failure:
            raise failure[0]
        self._loop = loop
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    async def _start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        p = self.prefix
        app.router.add_get(f"{p}/metadata", self._metadata)
        app.router.add_post(p, self._bundle)
        app.router.add_post(p + "/", self._bundle)
        app.router.add_get(p + "/{type}/_history", self._type_history)
        app.router.add_post(p + "/{type}/_search", self._search_post)
        app.router.add_get(p + "/{type}", self._search)
        app.router.add_post(p + "/{type}", self._create)
        app.router.add_put(p + "/{type}", self._conditional_update)
        app.router.add_get(p + "/{type}/{id}", self._read)
        app.router.add_put(p + "/{type}/{id}", self._update)
        app.router.add_delete(p + "/{type}/{id}", self._delete)
        app.router.add_get(p + "/{type}/{id}/_history", self._history)
        app.router.add_get(p + "/{type}/{id}/_history/{vid}", self._vread)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- plumbing ---------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path_qs,
                {h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers},
            )
        )
        fault = self._take_fault(request)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.hold is not None:
                await asyncio.to_thread(fault.hold.wait, 120)
            if fault.status is not None:
                body = fault.body if fault.body is not None else _outcome("transient", "injected fault")
                return web.Response(
                    status=fault.status, text=json.dumps(body), content_type=FHIR_JSON, headers=fault.headers
                )
        if self.required_token and request.headers.get("Authorization") != f"Bearer {self.required_token}":
            return _json(401, _outcome("login", "missing or wrong bearer token"))
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except FhirStoreError as exc:
            return _json(exc.http_status, exc.operation_outcome())

    def _take_fault(self, request: web.Request) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.match is None or fault.match(request):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            value = json.loads(await request.read())
        except ValueError:
            raise InvalidResource("malformed JSON") from None
        if not isinstance(value, dict):
            raise InvalidResource("the body must be a JSON object")
        return value

    def _write(self, result: Any) -> web.Response:
        return _json(
            201 if result.created else 200,
            result.resource,
            {
                "ETag": result.etag,
                "Location": f"{self.base_url}/{result.location}",
                "Last-Modified": format_instant(result.last_modified),
            },
        )

    # -- handlers ---------------------------------------------------------------------------------

    async def _metadata(self, request: web.Request) -> web.Response:
        caps = self.repo.capabilities()
        return _json(
            200,
            {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "kind": "instance",
                "fhirVersion": "4.0.1",
                "format": ["json"],
                "rest": [caps["rest"]],
            },
        )

    async def _read(self, request: web.Request) -> web.Response:
        stored = self.repo.read(request.match_info["type"], request.match_info["id"])
        return _json(200, stored.resource, {"ETag": stored.etag})

    async def _vread(self, request: web.Request) -> web.Response:
        info = request.match_info
        stored = self.repo.vread(info["type"], info["id"], info["vid"])
        return _json(200, stored.resource, {"ETag": stored.etag})

    async def _create(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if body.get("resourceType") != request.match_info["type"]:
            raise InvalidResource("resourceType does not match the URL", expression="resourceType")
        if_none_exist = request.headers.get("If-None-Exist")
        if self.threaded_creates:
            result = await asyncio.to_thread(self.repo.create, body, if_none_exist=if_none_exist)
        else:
            result = self.repo.create(body, if_none_exist=if_none_exist)
        return self._write(result)

    async def _update(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        info = request.match_info
        return self._write(
            self.repo.update(info["type"], info["id"], body, if_match=request.headers.get("If-Match"))
        )

    async def _conditional_update(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        result = self.repo.conditional_update(
            request.match_info["type"], request.query_string, body, if_match=request.headers.get("If-Match")
        )
        return self._write(result)

    async def _delete(self, request: web.Request) -> web.Response:
        self.repo.delete(request.match_info["type"], request.match_info["id"])
        return web.Response(status=204)

    async def _history(self, request: web.Request) -> web.Response:
        info = request.match_info
        return _json(
            200, history_bundle(self.repo.history(info["type"], info["id"], **_history_args(request)))
        )

    async def _type_history(self, request: web.Request) -> web.Response:
        return _json(
            200, history_bundle(self.repo.history(request.match_info["type"], **_history_args(request)))
        )

    async def _search(self, request: web.Request) -> web.Response:
        return self._searchset(request, request.match_info["type"], parse_query_string(request.query_string))

    async def _search_post(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = [(k, str(v)) for k, v in form.items()]
        return self._searchset(request, request.match_info["type"], params)

    def _searchset(self, request: web.Request, rtype: str, params: list[tuple[str, str]]) -> web.Response:
        lenient = "handling=lenient" in request.headers.get("Prefer", "")
        result = self.repo.search(rtype, params, strict=not lenient)
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if result.total is not None:
            bundle["total"] = result.total
        base = [*result.params, ("_count", str(result.count))]
        links = [
            {
                "relation": "self",
                "url": f"{self.base_url}/{rtype}?{urlencode([*base, ('_offset', str(result.offset))])}",
            }
        ]
        if result.resources and (
            result.has_next or (result.total is None and len(result.resources) == result.count)
        ):
            next_offset = str(result.offset + len(result.resources))
            links.append(
                {
                    "relation": "next",
                    "url": f"{self.base_url}/{rtype}?{urlencode([*base, ('_offset', next_offset)])}",
                }
            )
        bundle["link"] = links
        bundle["entry"] = [
            {"fullUrl": f"{self.base_url}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in result.resources
        ] + [
            {
                "fullUrl": f"{self.base_url}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "include"},
            }
            for r in result.included
        ]
        return _json(200, bundle)

    async def _bundle(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        entries = body.get("entry") or []
        if isinstance(entries, list) and len(entries) > self.max_bundle_entries:
            return _json(413, _outcome("too-costly", f"bundle exceeds {self.max_bundle_entries} entries"))
        if body.get("type") == "batch":
            return _json(200, self.repo.batch(body))
        return _json(200, self.repo.transaction(body))


def _history_args(request: web.Request) -> dict[str, Any]:
    from datetime import datetime

    args: dict[str, Any] = {}
    if "_count" in request.query:
        args["count"] = int(request.query["_count"])
    if "_since" in request.query:
        args["since"] = datetime.fromisoformat(request.query["_since"].replace("Z", "+00:00"))
    return args


def _outcome(code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type=FHIR_JSON, headers=headers or {})
