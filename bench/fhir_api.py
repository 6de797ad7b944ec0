"""FHIR API through the local functions host over loopback: requests/s and p50/p99 latency.

Workloads, each against the same host in the same run:

* ``trivial``  ``GET /api/bench/ping`` - a JSON endpoint that does nothing (same host, same HTTP function
  plumbing: correlation ID, JSON response); the yardstick the others are divided by;
* ``read``     ``GET /api/fhir/Patient/{id}`` over pre-created patients;
* ``search``   ``GET /api/fhir/Patient?identifier=<NHS number system>|<n>``;
* ``create``   ``POST /api/fhir/Patient`` (validation, clinical-event dry run, SQLite write, event publish
  and journal on the embedded stores).

The host is the local functions host (``tie.localhost``, as ``tie run`` starts it: bootstrap, container
from settings, 16 HTTP worker threads unless ``--host-workers``) in a subprocess serving this module's
``bench_app`` (the FHIR blueprints plus the trivial endpoint; not registered in ``function_app``); the load
comes from this process (asyncio + aiohttp,
``--connections`` concurrent keep-alive connections, closed loop, the workloads interleaved in
``--rounds`` slices so that other load on the machine affects them alike). Then a fixed-rate open-loop run of
``read`` at ``--rate`` req/s reports the latency a client sees at that load (target: p99 < 20 ms at 200
req/s; read-by-id >= 50% of the trivial endpoint's throughput). Both processes share the machine's cores,
so absolute numbers are a floor; the ratios are the result.

    .venv/bin/python bench/fhir_api.py [--seconds 3] [--connections 16] [--rate 200] [--patients 2000]
        [--json .local/bench/fhir_api.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_JSON = "application/fhir+json"

_app: Any = None


def _build_app() -> Any:
    import azure.functions as func

    from functions._fhir import blueprints
    from functions._http import http_endpoint, json_response

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for bp in blueprints():
        app.register_functions(bp)

    @app.function_name("bench_ping")
    @app.route(route="bench/ping", methods=["GET"])
    @http_endpoint
    def ping(req: func.HttpRequest, correlation_id: str) -> func.HttpResponse:
        return json_response({"ok": True}, correlation_id=correlation_id)

    return app


def __getattr__(name: str) -> Any:
    """``bench_app`` is built on first access (only the host process needs it)."""
    global _app
    if name == "bench_app":
        if _app is None:
            _app = _build_app()
        return _app
    raise AttributeError(name)


# ------------------------------------------------------------------------------------------- data


def nhs_numbers(count: int, start: int = 9_100_000_000) -> list[str]:
    """Valid NHS numbers (Modulus 11) from a fabricated range."""
    from shared.identifiers.nhs_number import is_valid_nhs_number

    out: list[str] = []
    candidate = start
    while len(out) < count:
        if is_valid_nhs_number(str(candidate)):
            out.append(str(candidate))
        candidate += 1
    return out


def patient(nhs: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_SYSTEM, "value": nhs}],
        "name": [{"family": "Benchperson", "given": ["Alex"]}],
        "birthDate": "1980-05-01",
        "gender": "female",
    }


# ------------------------------------------------------------------------------------------- load


@dataclass
class Result:
    name: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


Request = Callable[[Any, int], Awaitable[int]]


async def closed_loop(session: Any, name: str, call: Request, connections: int, seconds: float) -> Result:
    """``connections`` workers, each sending its next request when the previous one answered."""
    result = Result(name)
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await call(session, next(counter))
            result.latencies.append(time.perf_counter() - started)
            result.requests += 1
            if status >= 400:
                result.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


async def open_loop(session: Any, name: str, call: Request, rate: float, seconds: float) -> Result:
    """Requests started every ``1/rate`` s whatever the answers (latency as a client at that load sees it)."""
    result = Result(name)
    tasks: list[asyncio.Task[None]] = []
    interval = 1.0 / rate

    async def one(index: int) -> None:
        started = time.perf_counter()
        status = await call(session, index)
        result.latencies.append(time.perf_counter() - started)
        result.requests += 1
        if status >= 400:
            result.errors += 1

    begin = time.perf_counter()
    for index in range(int(rate * seconds)):
        delay = begin + index * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - begin
    return result


# ------------------------------------------------------------------------------------------- host


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_host(local_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """This module with ``--serve`` in a subprocess: the local host (``tie.localhost``) serving
    ``bench_app`` on the embedded stores under ``local_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIE_", "TieStorage__"))}
    env.update({"TIE_LOCAL_DIR": str(local_dir), "PYTHONPATH": str(ROOT), "TIE_LOG_LEVEL": "WARNING"})
    args = [sys.executable, str(Path(__file__).resolve()), "--serve", "--port", str(port)]
    args += ["--host-workers", str(workers)]
    log = open(local_dir / "host.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"host exited early; see {local_dir / 'host.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("host did not start")


# ------------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, base: str) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max(args.connections, 64))
    async with aiohttp.ClientSession(connector=connector) as session:
        numbers = nhs_numbers(args.patients + 200_000 // 10)
        stored, fresh = numbers[: args.patients], numbers[args.patients :]
        ids: list[str] = []
        for start in range(0, len(stored), 100):
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": patient(n), "request": {"method": "POST", "url": "Patient"}}
                    for n in stored[start : start + 100]
                ],
            }
            async with session.post(
                f"{base}/fhir", data=json.dumps(bundle), headers={"Content-Type": FHIR_JSON}
            ) as response:
                body = await response.json(content_type=None)
                assert response.status == 200, body
                ids += [e["resource"]["id"] for e in body["entry"]]
        rng = random.Random(7)
        fresh_iter = iter(fresh)

        async def trivial(s: Any, i: int) -> int:
            async with s.get(f"{base}/bench/ping") as r:
                await r.read()
                return int(r.status)

        async def read(s: Any, i: int) -> int:
            async with s.get(f"{base}/fhir/Patient/{rng.choice(ids)}") as r:
                await r.read()
                return int(r.status)

        async def search(s: Any, i: int) -> int:
            nhs = rng.choice(stored)
            async with s.get(f"{base}/fhir/Patient", params={"identifier": f"{NHS_SYSTEM}|{nhs}"}) as r:
                await r.read()
                return int(r.status)

        async def create(s: Any, i: int) -> int:
            payload = json.dumps(patient(next(fresh_iter)))
            async with s.post(f"{base}/fhir/Patient", data=payload, headers={"Content-Type": FHIR_JSON}) as r:
                await r.read()
                return int(r.status)

        workloads: list[tuple[str, Request]] = [
            ("trivial JSON endpoint", trivial),
            ("read-by-id", read),
            ("search-by-identifier", search),
            ("create", create),
        ]
        for name, call in workloads:
            await closed_loop(session, name, call, args.connections, 0.5)  # warm-up
        # Interleaved slices: load from other processes on a shared machine hits every workload alike.
        results = [Result(name) for name, _ in workloads]
        for _round in range(args.rounds):
            for total, (name, call) in zip(results, workloads, strict=True):
                part = await closed_loop(session, name, call, args.connections, args.seconds / args.rounds)
                total.requests += part.requests
                total.errors += part.errors
                total.seconds += part.seconds
                total.latencies += part.latencies
        paced = await open_loop(session, f"read-by-id at {args.rate:g} req/s", read, args.rate, args.seconds)

    yardstick = results[0].rate
    print(
        f"\nFHIR API via the local host ({args.host_workers} HTTP workers), loopback, load from a separate "
        f"process ({args.connections} connections, {args.seconds:g} s per workload, {args.patients} patients)"
    )
    print(f"{'workload':<30} {'req/s':>9} {'vs trivial':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for r in results:
        print(
            f"{r.name:<30} {r.rate:>9.0f} {r.rate / yardstick:>11.2f} {r.percentile(50):>8.2f} "
            f"{r.percentile(99):>8.2f} {r.errors:>7}"
        )
    print(
        f"{paced.name:<30} {paced.rate:>9.0f} {'(paced)':>11} {paced.percentile(50):>8.2f} "
        f"{paced.percentile(99):>8.2f} {paced.errors:>7}"
    )
    read_ratio = results[1].rate / yardstick
    print(
        f"\ntargets: read-by-id >= 0.50 x trivial -> {read_ratio:.2f} "
        f"({'met' if read_ratio >= 0.5 else 'NOT met'}); p99 < 20 ms at {args.rate:g} req/s -> "
        f"{paced.percentile(99):.2f} ms ({'met' if paced.percentile(99) < 20 else 'NOT met'})"
    )
    if args.json:
        rows = {r.name: {"rate": r.rate, "vs_trivial": r.rate / yardstick} for r in results}
        for r in (*results, paced):
            rows.setdefault(r.name, {"rate": r.rate})
            rows[r.name] |= {"p50_ms": r.percentile(50), "p99_ms": r.percentile(99), "errors": r.errors}
        out = {"bench": "fhir_api", "connections": args.connections, "seconds": args.seconds}
        out |= {"cpus": os.cpu_count(), "workloads": rows, "paced_rate": args.rate}
        out["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


def serve(port: int, workers: int) -> None:
    """The host process: like ``tie run`` (bootstrap, the container from settings, the local host) with
    ``bench_app`` and ``workers`` HTTP worker threads (``tie run`` uses 16)."""
    os.environ["TIE_LOCAL_HOST"] = "1"
    from shared.bootstrap import bootstrap
    from shared.wiring import get_container
    from tie.localhost.host import HostConfig, LocalHost

    bootstrap()
    app = __getattr__("bench_app")
    container = get_container()
    config = HostConfig(port=port, http_workers=workers, enable_service_bus=False, enable_timers=False)

    async def run_host() -> None:
        host = LocalHost(app=app, bus=container.bus, records=container.records, config=config)
        await host.start()
        await asyncio.Event().wait()

    asyncio.run(run_host())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved slices per workload")
    parser.add_argument("--host-workers", type=int, default=16, help="HTTP worker threads of the host")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.host_workers)
        return
    with tempfile.TemporaryDirectory(prefix="tie-bench-fhir-") as tmp:
        local = Path(tmp)
        port = free_port()
        proc = start_host(local, port, args.host_workers)
        try:
            asyncio.run(run(args, f"http://127.0.0.1:{port}/api"))
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
