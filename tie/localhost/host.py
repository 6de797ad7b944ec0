"""The local functions host: HTTP, Service Bus topic and timer triggers for a registered FunctionApp.

Behaviour mirrors the Azure Functions host where it matters locally:

* HTTP on ``http://127.0.0.1:7071/<routePrefix>/...`` (``routePrefix`` from host.json, default ``api``);
  route templates, methods and ``route_params`` honoured; unknown route -> 404 JSON, wrong method -> 405
  JSON with ``Allow``; an exception escaping a function -> 500 JSON with a correlation ID and no stack
  trace or payload. Function keys are not enforced locally (Core Tools does not either).
* Nothing the HTTP server logs or answers by itself carries a request line, query string, header value or
  body (they hold patient identifiers: FHIR search parameters, NHS numbers): no access log, and requests
  the HTTP parser rejects get a fixed JSON error - a URL longer than :data:`MAX_URL_BYTES` 414, an
  over-long header 431, anything else unparseable 400 - logged with the status and error type only.
* Service Bus topic triggers are fed from the container's message bus (the embedded SQLite bus unless
  ``TIE_BUS_BACKEND=azure``): peek-lock receive, complete on success, abandon on exception (delivery count
  rises), the bus dead-letters after max delivery count; locks are renewed while a function runs
  (``maxAutoLockRenewalDuration``). Concurrency from host.json ``extensions.serviceBus``.
* Timer triggers fire on their NCRONTAB schedules; schedule status is persisted in the record store so a
  schedule missed while the host was down fires on start-up with ``past_due=True`` (``useMonitor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from shared.backbone.settlement import ABANDONED, DEAD_LETTERED, settle_failure
from shared.errors import TieError
from shared.messaging.errors import MessageLockLost
from shared.messaging.ports import NEXT_AVAILABLE_SESSION, CompleteAndRelease, MessageBus, ReceivedMessage
from shared.observability.correlation import HEADER, from_headers, new_correlation_id
from shared.storage.ports import RecordStore
from tie.localhost.discovery import FunctionSpec, describe
from tie.localhost.ncrontab import Schedule
from tie.localhost.routes import RouteTable

_log = logging.getLogger("tie.host")

TIMER_STATUS_TABLE = "timerstatus"
#: Longest request URL (path and query) served; longer -> 414. Differs from :data:`MAX_HEADER_BYTES` so
#: the parser's "line too long" error tells which limit was crossed.
MAX_URL_BYTES = 8192
#: Longest request header value (and name); longer -> 431.
MAX_HEADER_BYTES = 8190


@dataclass(frozen=True)
class HostConfig:
    host: str = "127.0.0.1"
    port: int = 7071
    route_prefix: str = "api"
    max_concurrent_calls: int = 4
    max_concurrent_sessions: int = 4
    max_message_batch_size: int = 32
    max_auto_lock_renewal: timedelta = timedelta(minutes=5)
    max_request_bytes: int = 100 * 1024 * 1024
    http_workers: int = 16
    receive_wait_seconds: float = 0.5
    enable_http: bool = True
    enable_service_bus: bool = True
    enable_timers: bool = True

    @classmethod
    def from_host_json(cls, path: Path | str = "host.json", **overrides: Any) -> HostConfig:
        values: dict[str, Any] = {}
        p = Path(path)
        if p.exists():
            doc = json.loads(p.read_text(encoding="utf-8"))
            ext = doc.get("extensions", {})
            http = ext.get("http", {})
            if "routePrefix" in http:
                values["route_prefix"] = str(http["routePrefix"]).strip("/")
            sb = ext.get("serviceBus", {})
            # Locally we cap concurrency: a laptop, SQLite, and readable logs.
            if "maxConcurrentCalls" in sb:
                values["max_concurrent_calls"] = max(1, min(int(sb["maxConcurrentCalls"]), 8))
            if "maxConcurrentSessions" in sb:
                values["max_concurrent_sessions"] = max(1, min(int(sb["maxConcurrentSessions"]), 8))
            if "maxMessageBatchSize" in sb:
                values["max_message_batch_size"] = int(sb["maxMessageBatchSize"])
            if "maxAutoLockRenewalDuration" in sb:
                h, m, s = (int(x) for x in str(sb["maxAutoLockRenewalDuration"]).split(":"))
                values["max_auto_lock_renewal"] = timedelta(hours=h, minutes=m, seconds=s)
        values.update(overrides)
        return cls(**values)


class _Context:
    """The subset of ``func.Context`` functions read."""

    def __init__(self, function_name: str) -> None:
        self.invocation_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_directory = str(Path.cwd())
        self.trace_context = None
        self.retry_context = None
        self.thread_local_storage = threading.local()


#: The parameter a Service Bus trigger takes its ``ServiceBusMessageActions`` under (functions/_servicebus).
ACTIONS_ARG = "message_actions"


class _MessageActions:
    """``ServiceBusMessageActions`` over the container's bus, for triggers that settle their own message:
    each call settles the :class:`ReceivedMessage` behind the trigger's message and records the outcome."""

    def __init__(
        self,
        bus: MessageBus,
        batch: list[ReceivedMessage],
        converted: list[Any],
        *,
        release_with: CompleteAndRelease | None = None,
    ) -> None:
        self._bus = bus
        self._batch = batch  # renewed in place by the lock renewal loop
        self._index = {id(c): i for i, c in enumerate(converted)}
        self.outcomes: dict[int, str] = {}
        #: Set for a batch from one session: completing its last unsettled message also releases the
        #: session (one bus transaction); :attr:`released` says whether that happened.
        self._release_with = release_with
        self.released = False

    def _settle(self, message: Any, outcome: str, settle: Callable[[ReceivedMessage], None]) -> None:
        i = self._index[id(message)]
        settle(self._batch[i])  # lock loss propagates (recorded as unsettled)
        self.outcomes[i] = outcome

    def complete(self, message: Any) -> None:
        last = len(self.outcomes) == len(self._batch) - 1 and self._index[id(message)] not in self.outcomes
        if self._release_with is not None and last:
            self._settle(message, "completed", self._release_with.complete_and_release)
            self.released = True
            return
        self._settle(message, "completed", self._bus.complete)

    def abandon(self, message: Any) -> None:
        self._settle(message, ABANDONED, self._bus.abandon)

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None:
        self._settle(
            message,
            DEAD_LETTERED,
            lambda m: self._bus.dead_letter(
                m, reason=deadletter_reason or "", description=deadletter_error_description or ""
            ),
        )


def _call(spec: FunctionSpec, trigger_value: Any, actions: _MessageActions | None = None) -> Any:
    kwargs: dict[str, Any] = {spec.arg_name: trigger_value}
    import inspect

    params = inspect.signature(spec.user_function).parameters
    if "context" in params and spec.arg_name != "context":
        kwargs["context"] = _Context(spec.name)
    if ACTIONS_ARG in params and actions is not None:
        kwargs[ACTIONS_ARG] = actions
    result = spec.user_function(**kwargs)
    if asyncio.iscoroutine(result):
        return asyncio.run(result)
    return result


def _json_error(status: int, code: str, message: str, correlation_id: str, **extra: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, "correlationId": correlation_id, **extra}}
    return web.json_response(body, status=status, headers={HEADER: correlation_id})


class _PrivateRequestHandler(RequestHandler):
    """aiohttp's connection handler without its two leaks: the error page for a request it cannot parse
    quotes the request line (query string included), and its error log lines carry the exception text
    (the same request line) and traceback. Both are replaced by fixed text, status and error type."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        del message  # aiohttp's message quotes the request
        if isinstance(exc, LineTooLong):
            too_long_url = len(exc.args) > 1 and exc.args[1] == self.max_line_size
            status, code, text = (
                (414, "uri_too_long", "The request URL is too long.")
                if too_long_url
                else (431, "header_too_large", "A request header is too large.")
            )
        elif status >= 500:
            status, code, text = 500, "internal_error", "An internal error occurred."
        else:
            code, text = "bad_request", "The request could not be parsed."
        _log.warning(
            "http request rejected",
            extra={"status": status, "error_code": type(exc).__name__ if exc else "-"},
        )
        if request.writer.output_size > 0:  # a response has started: the connection is broken
            raise ConnectionError("response already started")
        response = _json_error(status, code, text, new_correlation_id())
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        _log.error(
            "http server error",
            extra={"error_code": type(exc).__name__ if isinstance(exc, BaseException) else "-"},
        )

    def log_debug(self, *args: Any, **kw: Any) -> None:
        """aiohttp's debug lines (client disconnects, timeouts) are dropped: some carry exceptions."""


class _PrivateServer(web.Server):
    """``web.Server`` building :class:`_PrivateRequestHandler` connections."""

    def __call__(self) -> RequestHandler:
        return _PrivateRequestHandler(self, loop=self._loop, **self._kwargs)


@dataclass
class _Stats:
    completed: int = 0
    abandoned: int = 0
    dead_lettered: int = 0
    lock_lost: int = 0
    timer_runs: int = 0
    http_requests: int = 0


@dataclass
class LocalHost:
    app: func.FunctionApp
    bus: MessageBus
    records: RecordStore
    config: HostConfig = field(default_factory=HostConfig)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.functions = describe(self.app)
        self.http_functions = sorted(
            (f for f in self.functions if f.kind == "http"),
            key=lambda f: f.route.precedence if f.route else (),
        )
        self._routes = RouteTable((f.route, f) for f in self.http_functions if f.route is not None)
        self.bus_functions = [f for f in self.functions if f.kind == "serviceBus"]
        self.timer_functions = [f for f in self.functions if f.kind == "timer"]
        self.unsupported = [f for f in self.functions if f.kind not in {"http", "serviceBus", "timer"}]
        self.stats = _Stats()
        self._complete_and_release = self.bus if isinstance(self.bus, CompleteAndRelease) else None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._executor = ThreadPoolExecutor(self.config.http_workers, thread_name_prefix="tie-http")
        self._runner: web.ServerRunner | None = None
        self._site_port: int | None = None
        self._schedules = {f.name: Schedule.parse(f.schedule or "") for f in self.timer_functions}

    # ------------------------------------------------------------------------------------------- HTTP
    @property
    def port(self) -> int:
        return self._site_port if self._site_port is not None else self.config.port

    @property
    def base_url(self) -> str:
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        return f"http://{self.config.host}:{self.port}{prefix}"

    def _resolve(self, path: str, method: str) -> tuple[FunctionSpec | None, dict[str, str], set[str]]:
        allowed: set[str] = set()
        for spec, params in self._routes.matches(path):
            if spec.methods is None or method in spec.methods:
                return spec, params, allowed
            allowed.update(spec.methods)
        return None, {}, allowed

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.stats.http_requests += 1
        correlation_id, _ = from_headers(dict(request.headers))
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        path = request.path
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return _json_error(404, "not_found", "No function serves this route.", correlation_id)
        sub_path = path[len(prefix) :]
        spec, params, allowed = self._resolve(sub_path, request.method.upper())
        if spec is None:
            if allowed:
                resp = _json_error(
                    405, "method_not_allowed", "Method not allowed on this route.", correlation_id
                )
                resp.headers["Allow"] = ", ".join(sorted(allowed))
                return resp
            return _json_error(404, "not_found", "No function serves this route.", correlation_id)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json_error(413, "payload_too_large", "The request body is too large.", correlation_id)
        req = func.HttpRequest(
            method=request.method.upper(),
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=params,
            body=body,
        )
        started = time.perf_counter()
        try:
            if spec.is_async:
                result = await spec.user_function(**{spec.arg_name: req})
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self._executor, _call, spec, req)
        except Exception as exc:  # noqa: BLE001 - trigger boundary: every failure is mapped, none escapes
            _log.error(
                "function raised",
                extra={"function": spec.name, "error_code": getattr(exc, "code", type(exc).__name__)},
            )
            return _json_error(500, "internal_error", "An internal error occurred.", correlation_id)
        finally:
            _log.debug(
                "http invocation",
                extra={
                    "function": spec.name,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        return self._to_aiohttp(result, correlation_id)

    @staticmethod
    def _to_aiohttp(result: Any, correlation_id: str) -> web.Response:
        if result is None:
            return web.Response(status=204, headers={HEADER: correlation_id})
        if isinstance(result, str):
            return web.Response(text=result, headers={HEADER: correlation_id})
        if not isinstance(result, func.HttpResponse):
            _log.error("function returned an unsupported type", extra={"error_code": type(result).__name__})
            return _json_error(500, "internal_error", "An internal error occurred.", correlation_id)
        headers = dict(result.headers.items())
        if not any(k.lower() == "content-type" for k in headers) and result.mimetype:
            ctype = result.mimetype
            if result.charset and (ctype.startswith("text/") or "json" in ctype or "xml" in ctype):
                ctype += f"; charset={result.charset}"
            headers["Content-Type"] = ctype
        if not any(k.lower() == HEADER.lower() for k in headers):
            headers[HEADER] = correlation_id
        return web.Response(status=result.status_code, body=result.get_body(), headers=headers)

    def _web_server(self) -> web.Server:
        """The low-level server: every request goes to :meth:`_handle` (it routes), no access log."""
        loop = asyncio.get_running_loop()
        max_size = self.config.max_request_bytes

        def make_request(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> web.BaseRequest:
            return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=max_size)

        return _PrivateServer(
            self._handle,
            request_factory=make_request,
            access_log=None,
            max_line_size=MAX_URL_BYTES,
            max_field_size=MAX_HEADER_BYTES,
        )

    # ------------------------------------------------------------------------------------ Service Bus
    def _to_sb_message(self, m: ReceivedMessage) -> func.ServiceBusMessage:
        props: dict[str, object] = dict(m.application_properties)
        return ServiceBusMessage(
            body=m.body,
            trigger_metadata={"DeliveryCount": m.delivery_count, "MessageId": m.message_id},
            application_properties=props,
            content_type=m.content_type,
            correlation_id=m.correlation_id,
            delivery_count=m.delivery_count,
            enqueued_sequence_number=m.sequence_number,
            enqueued_time_utc=m.enqueued_time,
            expires_at_utc=m.expires_at,
            label=m.subject,
            locked_until=m.locked_until,
            lock_token=m.lock_token,
            message_id=m.message_id,
            sequence_number=m.sequence_number,
            session_id=m.session_id,
            subject=m.subject,
            user_properties=props,
        )

    def _run_with_lock_renewal(
        self,
        spec: FunctionSpec,
        arg: Any,
        messages: list[ReceivedMessage],
        actions: _MessageActions | None = None,
    ) -> None:
        """Run the function in a worker thread, renewing the messages' locks until it returns."""
        result: Future[Any] = Future()

        def target() -> None:
            try:
                result.set_result(_call(spec, arg, actions))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                result.set_exception(exc)

        worker = threading.Thread(target=target, name=f"tie-fn-{spec.name}", daemon=True)
        worker.start()
        deadline = time.monotonic() + self.config.max_auto_lock_renewal.total_seconds()
        while True:
            lock_left = min(
                ((m.locked_until - self.clock()).total_seconds() for m in messages if m.locked_until),
                default=30.0,
            )
            worker.join(timeout=max(0.05, lock_left / 2))
            if not worker.is_alive():
                break
            if time.monotonic() < deadline:
                for i, m in enumerate(messages):
                    with contextlib.suppress(TieError):
                        messages[i] = _with_locked_until(m, self.bus.renew_lock(m))
        result.result()  # re-raise the function's exception

    def _pump(self, spec: FunctionSpec) -> None:
        assert spec.topic
        assert spec.subscription
        while not self._stop.is_set():
            try:
                batch = self.bus.receive(
                    spec.topic,
                    spec.subscription,
                    max_messages=self.config.max_message_batch_size if spec.many else 1,
                    max_wait=self.config.receive_wait_seconds,
                    session_id=NEXT_AVAILABLE_SESSION if spec.sessions else None,
                )
            except TieError as exc:
                _log.warning("receive failed", extra={"function": spec.name, "error_code": exc.code})
                self._stop.wait(1.0)
                continue
            if not batch:
                continue
            self._deliver_and_release(spec, batch)

    def _deliver_and_release(self, spec: FunctionSpec, batch: list[ReceivedMessage]) -> None:
        """Deliver ``batch``; on a session subscription then give the session up (with the last completion
        when the bus can do both in one step)."""
        assert spec.topic
        assert spec.subscription
        session = batch[0].session_id if spec.sessions else None
        released = self._deliver(spec, batch, release_session=session is not None)
        if session and not released:
            with contextlib.suppress(TieError):
                self.bus.release_session(spec.topic, spec.subscription, session)

    def _count_own_settlements(self, actions: _MessageActions) -> None:
        for outcome in actions.outcomes.values():
            if outcome == DEAD_LETTERED:
                self.stats.dead_lettered += 1
            elif outcome == ABANDONED:
                self.stats.abandoned += 1
            else:
                self.stats.completed += 1

    def _deliver(
        self, spec: FunctionSpec, batch: list[ReceivedMessage], *, release_session: bool = False
    ) -> bool:
        """Run ``spec`` on ``batch`` and settle it. With ``release_session`` (all from one session), the
        last completion also releases the session when the bus can do both at once; returns whether it
        did (else the caller releases it)."""
        converted = [self._to_sb_message(m) for m in batch]
        release_with = self._complete_and_release if release_session else None
        actions = _MessageActions(self.bus, batch, converted, release_with=release_with)
        try:
            arg: Any = converted if spec.many else converted[0]
            self._run_with_lock_renewal(spec, arg, batch, actions)
        except Exception as exc:  # noqa: BLE001 - trigger boundary: every failure is mapped, none escapes
            if len(actions.outcomes) == len(batch):  # the function settled its messages itself
                self._count_own_settlements(actions)
                return actions.released
            outcome = ABANDONED
            for m in batch:
                try:
                    if len(batch) == 1:  # a permanent failure: straight to dead-letter, with its reason
                        outcome = settle_failure(self.bus, m, exc)
                    else:
                        self.bus.abandon(m)
                except MessageLockLost:
                    self.stats.lock_lost += 1
            if outcome == DEAD_LETTERED:
                self.stats.dead_lettered += 1
            else:
                self.stats.abandoned += len(batch)
            _log.warning(
                "function failed; message %s",
                outcome,
                extra={
                    "function": spec.name,
                    "message_id": batch[0].message_id,
                    "delivery_count": batch[0].delivery_count,
                    "error_code": getattr(exc, "code", type(exc).__name__),
                },
            )
            return False
        self._count_own_settlements(actions)  # what the function settled itself
        released = actions.released
        last = len(batch) - 1
        for i, m in enumerate(batch):
            if i in actions.outcomes:
                continue
            try:
                if i == last and release_with is not None:
                    release_with.complete_and_release(m)  # one bus transaction
                    released = True
                else:
                    self.bus.complete(m)
                self.stats.completed += 1
            except MessageLockLost:
                self.stats.lock_lost += 1
                _log.warning(
                    "lock lost before completion; message will be redelivered",
                    extra={"function": spec.name, "message_id": m.message_id},
                )
        return released

    # ----------------------------------------------------------------------------------------- Timers
    def _timer_status(self, name: str) -> dict[str, Any] | None:
        rec = self.records.get(TIMER_STATUS_TABLE, "timers", name)
        return rec.value if rec else None

    def _save_timer_status(self, name: str, last: datetime, next_: datetime) -> None:
        self.records.upsert(
            TIMER_STATUS_TABLE,
            "timers",
            name,
            {"Last": last.isoformat(), "Next": next_.isoformat(), "LastUpdated": self.clock().isoformat()},
        )

    def fire_timer(self, spec: FunctionSpec, *, scheduled: datetime, past_due: bool) -> None:
        schedule = self._schedules[spec.name]
        next_ = schedule.next_after(max(scheduled, self.clock()))
        request = TimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": scheduled.isoformat(),
                "Next": next_.isoformat(),
                "LastUpdated": self.clock().isoformat(),
            },
            schedule={"AdjustForDST": True},
        )
        try:
            _call(spec, request)
            self.stats.timer_runs += 1
        except Exception as exc:  # noqa: BLE001 - trigger boundary: every failure is mapped, none escapes
            _log.error(
                "timer function raised",
                extra={"function": spec.name, "error_code": getattr(exc, "code", type(exc).__name__)},
            )
        finally:
            if spec.use_monitor:
                self._save_timer_status(spec.name, scheduled, next_)

    def _timer_loop(self, spec: FunctionSpec) -> None:
        try:
            self._timer_loop_inner(spec)
        except Exception as exc:  # noqa: BLE001 - a broken schedule must not take the host down
            _log.error("timer loop stopped", extra={"function": spec.name, "error_code": type(exc).__name__})

    def _timer_loop_inner(self, spec: FunctionSpec) -> None:
        schedule = self._schedules[spec.name]
        now = self.clock()
        status = self._timer_status(spec.name) if spec.use_monitor else None
        if status and datetime.fromisoformat(status["Next"]) <= now:
            self.fire_timer(spec, scheduled=datetime.fromisoformat(status["Next"]), past_due=True)
        elif spec.run_on_startup:
            self.fire_timer(spec, scheduled=now, past_due=False)
        due = schedule.next_after(self.clock())
        if spec.use_monitor and not status:
            self._save_timer_status(spec.name, now, due)
        while not self._stop.is_set():
            wait = (due - self.clock()).total_seconds()
            if wait > 0 and self._stop.wait(min(wait, 1.0)):
                break
            if wait > 0:
                continue
            late = (self.clock() - due).total_seconds()
            self.fire_timer(spec, scheduled=due, past_due=late > 60)
            due = schedule.next_after(max(due, self.clock() - timedelta(seconds=1)))

    # -------------------------------------------------------------------------------------- Lifecycle
    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    async def start(self) -> None:
        self._stop.clear()
        if self.config.enable_http:
            self._runner = web.ServerRunner(self._web_server(), handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
            await site.start()
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            self._site_port = sockets[0].getsockname()[1] if sockets else self.config.port
        if self.config.enable_service_bus:
            for spec in self.bus_functions:
                workers = (
                    self.config.max_concurrent_sessions if spec.sessions else self.config.max_concurrent_calls
                )
                for i in range(workers):
                    self._spawn(f"tie-sb-{spec.name}-{i}", self._pump, spec)
        if self.config.enable_timers:
            for spec in self.timer_functions:
                self._spawn(f"tie-timer-{spec.name}", self._timer_loop, spec)
        for spec in self.unsupported:
            _log.warning("trigger type not supported by the local host", extra={"function": spec.name})

    async def stop(self, grace: float = 10.0) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        deadline = time.monotonic() + grace
        for thread in self._threads:
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
        self._threads.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def banner(self) -> str:
        lines = ["Functions:"]
        for spec in self.functions:
            if spec.kind == "http" and spec.route is not None:
                methods = ",".join(sorted(spec.methods)) if spec.methods else "ALL"
                lines.append(f"    {spec.name}: [{methods}] {self.base_url}/{spec.route.template.strip('/')}")
            elif spec.kind == "serviceBus":
                lines.append(f"    {spec.name}: serviceBusTrigger ({spec.topic}/{spec.subscription})")
            elif spec.kind == "timer":
                lines.append(f"    {spec.name}: timerTrigger ({spec.schedule})")
            else:
                lines.append(f"    {spec.name}: {spec.kind} (not run locally)")
        return "\n".join(lines)


def _with_locked_until(message: ReceivedMessage, locked_until: datetime) -> ReceivedMessage:
    import dataclasses

    return dataclasses.replace(message, locked_until=locked_until)
