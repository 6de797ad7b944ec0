"""The production FunctionApp for ``bench/pipeline.py``, optionally without write-back idempotency, optionally
instrumented.

``BENCH_IDEMPOTENCY=0`` installs a backbone whose write-back subscribers call the downstream directly
(no idempotency guard, so no outbox: the writeback.completed event is published directly instead) - the
"without" side of the overhead ratio. Anything else: exactly what ``make run`` serves.

``BENCH_PROFILE_OUT=<file>`` (``bench/pipeline.py --profile``) instruments the whole host, in this process
only and for the bench only: every SQLite connection gets a trace callback (statements, BEGINs, COMMITs per
database file and per stage), and the stages below are wrapped with timers (wall and thread CPU time, calls;
nested stages are recorded under their caller's path, e.g. ``fn ingest_processor > map``). SIGUSR1 starts
the measured window (the counters so far become the baseline); at exit the window is written to the file as
JSON. The wrappers cost a few microseconds per call: the timed runs of the bench are not instrumented.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PROFILE_OUT = os.environ.get("BENCH_PROFILE_OUT")


class _Stats:
    """Counters shared by every thread of the host (one lock; a bench, not a hot path)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local = threading.local()
        self.stages: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # calls, wall s, CPU s
        self.sql: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.baseline: tuple[dict[str, list[float]], dict[tuple[str, str], list[int]]] | None = None
        self.window_started: float | None = None
        self.window_cpu: float = 0.0

    def path(self) -> list[str]:
        stack: list[str] | None = getattr(self.local, "stack", None)
        if stack is None:
            stack = self.local.stack = []
        return stack

    def timed(self, label: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stack = self.path()
            stack.append(label(*args, **kwargs) if callable(label) else label)
            key = " > ".join(stack)
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                stack.pop()
                with self.lock:
                    row = self.stages[key]
                    row[0] += 1
                    row[1] += wall
                    row[2] += cpu

        return wrapper

    def statement(self, database: str, sql: str) -> None:
        head = sql.lstrip()[:8].upper()
        stack = self.path()
        where = stack[0] if stack else "(outside any stage)"
        with self.lock:
            row = self.sql[(database, where)]
            row[0] += 1
            if head.startswith("BEGIN"):
                row[1] += 1
            elif head.startswith(("COMMIT", "END")):
                row[2] += 1
            elif head.startswith("ROLLBACK"):
                row[3] += 1

    def start_window(self, *_: object) -> None:
        """SIGUSR1: what was counted so far (start-up, warm-up) is left out of the report."""
        with self.lock:
            self.baseline = (
                {k: list(v) for k, v in self.stages.items()},
                {k: list(v) for k, v in self.sql.items()},
            )
            self.window_started = time.perf_counter()
            self.window_cpu = time.process_time()

    def dump(self, out: Path) -> None:
        with self.lock:
            stages0, sql0 = self.baseline or ({}, {})
            seconds = time.perf_counter() - self.window_started if self.window_started else None
            process_cpu = time.process_time() - self.window_cpu
            stages = {
                k: {
                    "calls": v[0] - stages0.get(k, [0, 0.0, 0.0])[0],
                    "wall_s": v[1] - stages0.get(k, [0, 0.0, 0.0])[1],
                    "cpu_s": v[2] - stages0.get(k, [0, 0.0, 0.0])[2],
                }
                for k, v in self.stages.items()
            }
            sql = [
                {
                    "database": db,
                    "stage": where,
                    **{
                        name: v[i] - sql0.get((db, where), [0, 0, 0, 0])[i]
                        for i, name in enumerate(("statements", "begins", "commits", "rollbacks"))
                    },
                }
                for (db, where), v in self.sql.items()
            ]
        out.write_text(
            json.dumps(
                {"window_s": seconds, "process_cpu_s": process_cpu, "stages": stages, "sqlite": sql}, indent=1
            )
        )


def _instrument(stats: _Stats, out: Path) -> None:
    real_connect = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(database, *args, **kwargs)
        name = Path(str(database)).name
        conn.set_trace_callback(lambda sql: stats.statement(name, sql))
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]  # the bench app's own process only

    import shared.ingest.hl7v2 as hl7v2
    import shared.ingest.ingest as ingest
    import tie.localhost.host as host
    from shared.adapters.embedded.sqlite_bus import SqliteBus
    from shared.adapters.embedded.sqlite_fhir import SqliteFhirRepository
    from shared.adapters.embedded.sqlite_records import SqliteRecordStore
    from shared.backbone.fhir_writeback import FhirDownstream
    from shared.backbone.hl7_writeback import Hl7MllpDownstream
    from shared.backbone.writeback import WriteBackSubscriber
    from shared.idempotency.base import IdempotencyGuard
    from shared.journal import Journal

    host._call = stats.timed(lambda spec, *_args: f"fn {spec.name}", host._call)
    for name, label in (
        ("parse_message", "parse"),
        ("validate", "validate"),
        ("map_message", "map (HL7 v2 -> canonical)"),
        ("accept", "persist (publish to tie-ingest)"),
    ):
        setattr(hl7v2, name, stats.timed(label, getattr(hl7v2, name)))
    hl7v2.Hl7Ingest.handle = stats.timed("edge: HL7 ingest", hl7v2.Hl7Ingest.handle)  # type: ignore[method-assign]
    hl7v2.Hl7Ingest._answer = stats.timed("ACK + outcome record", hl7v2.Hl7Ingest._answer)  # type: ignore[method-assign]
    ingest.process = stats.timed("ingest processor", ingest.process)
    classes: list[tuple[type, str, str]] = [
        (SqliteBus, "publish", "bus publish"),
        (SqliteBus, "receive", "bus receive (includes idle wait)"),
        (SqliteBus, "complete", "bus complete"),
        (SqliteBus, "complete_and_release", "bus complete + release session"),
        (SqliteBus, "abandon", "bus abandon"),
        (SqliteBus, "release_session", "bus release session"),
        (Journal, "record", "journal"),
        (SqliteRecordStore, "get", "records get"),
        (SqliteRecordStore, "insert", "records insert"),
        (SqliteRecordStore, "update", "records update"),
        (SqliteRecordStore, "upsert", "records upsert"),
        (WriteBackSubscriber, "handle", "write-back subscriber"),
        (IdempotencyGuard, "run_and_publish", "idempotency guard + outbox"),
        (FhirDownstream, "apply", "FHIR write-back (mapping + store)"),
        (Hl7MllpDownstream, "apply", "HL7 v2 write-back"),
        (SqliteFhirRepository, "transaction", "FHIR store transaction"),
        (SqliteFhirRepository, "read", "FHIR store read"),
        (SqliteFhirRepository, "search", "FHIR store search"),
    ]
    for cls, method, label in classes:
        setattr(cls, method, stats.timed(label, getattr(cls, method)))
    signal.signal(signal.SIGUSR1, stats.start_window)
    atexit.register(stats.dump, out)


if _PROFILE_OUT:
    _instrument(_Stats(), Path(_PROFILE_OUT))

from function_app import app  # noqa: E402 - after the instrumentation, before any connection is opened
from shared.backbone.runtime import (  # noqa: E402
    WriteBackOptions,
    build_backbone,
    default_downstreams,
)
from shared.messaging.topology import SUB_WRITEBACK_HL7V2  # noqa: E402
from shared.wiring import get_container  # noqa: E402

__all__ = ["app"]

if os.environ.get("BENCH_IDEMPOTENCY") == "0":
    _container = get_container()
    _downstreams = default_downstreams(_container.settings, _container.fhir)
    _backbone = build_backbone(
        bus=_container.bus,
        records=_container.records,
        downstreams=_downstreams,
        options=WriteBackOptions(idempotency=False),
    )
    _backbone._closables.append(_downstreams[SUB_WRITEBACK_HL7V2].close)
    _container.use_backbone(_backbone)
