"""The local PDS stand-in: the NHS PDS FHIR API sandbox's answers, served from the PDS corpus.

:class:`PdsStub` decides which response a request gets from ``data/stub_scenarios.json`` (the sandbox
scenario tables of the PDS specification, plus a few rows of this project's own, each marked ``local``);
:class:`StubTransport` calls it in process (the embedded default for ``make run``) and
:func:`serve` puts it on a loopback HTTP port (tests of the HTTP client). Behaviour that the sandbox has and
the tables imply: ``X-Request-ID`` is required (400 ``MISSING_VALUE``); with ``require_token`` a request
without a bearer token gets 401 ``ACCESS_DENIED``; ``_exact-match=true`` keeps only score-1.0 entries;
``_max-results`` truncates; address or GP parameters never return a restricted patient; ``PATCH`` needs
``If-Match`` (412 ``PRECONDITION_FAILED``) naming the current version (409 ``RESOURCE_VERSION_MISMATCH``).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.errors import ConfigurationError
from shared.identifiers.nhs_number import is_valid_nhs_number
from shared.pds.client import Reply
from shared.pds.model import is_restricted

_DATE = re.compile(r"^(eq|ge|le|gt|lt)?\d{4}-\d{2}-\d{2}$")
_RESTRICTING_PARAMS = frozenset({"address-postalcode", "address-postcode", "general-practitioner"})


@cache
def scenarios() -> dict[str, Any]:
    text = resources.files("shared.pds").joinpath("data/stub_scenarios.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def default_corpus() -> Path:
    """``../shared/corpora/nhs-pds-fhir-api`` beside the repository."""
    return Path(__file__).resolve().parents[4] / "shared" / "corpora" / "nhs-pds-fhir-api"


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]


class PdsStub:
    """The scenario logic, independent of HTTP. Thread-safe (updates hold a lock)."""

    def __init__(self, corpus: Path | None = None, *, require_token: bool = False) -> None:
        self._corpus = corpus or default_corpus()
        if not self._corpus.is_dir():
            raise ConfigurationError("the PDS corpus for the local stand-in is not present")
        self._require_token = require_token
        self._lock = threading.Lock()
        #: NHS number -> version after PATCHes (starts at the file's meta.versionId).
        self._versions: dict[str, int] = {}
        self.requests = 0

    def _file(self, rel: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self._corpus / rel).read_text("utf-8"))
        return data

    def _error(self, code: str, diagnostics: str = "", retry_after: str | None = None) -> _Answer:
        spec = scenarios()["errors"][code]
        issue: dict[str, Any] = {
            "severity": "error",
            "code": spec["code"],
            "details": {
                "coding": [
                    {
                        "system": "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode",
                        "version": "1",
                        "code": code,
                    }
                ]
            },
        }
        if diagnostics:
            issue["diagnostics"] = diagnostics
        headers = {"Retry-After": retry_after} if retry_after else {}
        return _Answer(spec["status"], {"resourceType": "OperationOutcome", "issue": [issue]}, headers)

    def respond(
        self, method: str, path: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]
    ) -> Reply:
        answer = self._respond(method, path, params, {k.lower(): v for k, v in headers.items()})
        out = {"content-type": "application/fhir+json", **{k.lower(): v for k, v in answer.headers.items()}}
        return Reply(answer.status, out, json.dumps(answer.body).encode("utf-8"))

    def _respond(
        self, method: str, path: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]
    ) -> _Answer:
        with self._lock:
            self.requests += 1
        if self._require_token and not headers.get("authorization", "").startswith("Bearer "):
            return self._error("ACCESS_DENIED", "Missing or invalid access token")
        if not headers.get("x-request-id"):
            return self._error("MISSING_VALUE", "X-Request-ID header must be supplied")
        parts = [p for p in path.split("/") if p]
        if parts[:1] != ["Patient"]:
            return self._error("INVALID_RESOURCE_ID", "Unknown resource")
        if len(parts) == 2 and method == "GET":
            return self._retrieve(parts[1])
        if len(parts) == 2 and method == "PATCH":
            return self._patch(parts[1], headers)
        if len(parts) == 1 and method == "GET":
            return self._search(params)
        return self._error("INVALID_RESOURCE_ID", "Unsupported interaction")

    def _retrieve(self, nhs_number: str) -> _Answer:
        if not is_valid_nhs_number(nhs_number):
            return self._error("INVALID_RESOURCE_ID", "Invalid NHS number")
        table = scenarios()
        row = next((r for r in table["retrieve"] if r["nhs_number"] == nhs_number), None)
        row = row or table["retrieve_default"]
        if "error" in row:
            return self._error(row["error"], retry_after=row.get("retry_after"))
        body = self._file(row["file"])
        number = str(body.get("id"))
        version = self._versions.get(number) or int(body.get("meta", {}).get("versionId", 1))
        body.setdefault("meta", {})["versionId"] = str(version)
        return _Answer(200, body, {"ETag": f'W/"{version}"'})

    def _patch(self, nhs_number: str, headers: Mapping[str, str]) -> _Answer:
        current = self._retrieve(nhs_number)
        if current.status != 200:
            return current
        if_match = headers.get("if-match")
        if not if_match:
            return self._error("PRECONDITION_FAILED", "If-Match header must be supplied")
        version = int(current.body["meta"]["versionId"])
        if if_match != f'W/"{version}"':
            return self._error("RESOURCE_VERSION_MISMATCH")
        with self._lock:
            self._versions[str(current.body["id"])] = version + 1
        return self._retrieve(nhs_number)

    def _search(self, params: Sequence[tuple[str, str]]) -> _Answer:
        table = scenarios()
        allowed = set(table["search_parameters"])
        if any(name not in allowed for name, _ in params):
            return self._error("ADDITIONAL_PROPERTIES", "Invalid search parameter")
        query: dict[str, str] = {}
        for name, value in params:
            if name in ("birthdate", "death-date") and not _DATE.match(value):
                return self._error("INVALID_SEARCH_DATA", "Invalid value - date format")
            query.setdefault(name, value)
        named = bool(query.get("family") or query.get("given"))
        if not named or not (query.get("birthdate") or query.get("email")):
            return self._error("TOO_FEW_VALUES_SUBMITTED", "Not enough search parameters were provided")
        # PDS matches names case-insensitively (the sandbox table spells them "Smith").
        lowered = {k: v.lower() for k, v in query.items()}
        rows = [
            r for r in table["search"] if all(lowered.get(k) == v.lower() for k, v in r["params"].items())
        ]
        if not rows:
            return _Answer(200, {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}, {})
        best = max(rows, key=lambda r: len(r["params"]))
        body = self._file(best["file"])
        if body.get("resourceType") != "Bundle":
            return _Answer(200, body, {})
        entries = list(body.get("entry") or ())
        if query.get("_exact-match") == "true":
            entries = [e for e in entries if float((e.get("search") or {}).get("score", 0)) >= 1.0]
        if _RESTRICTING_PARAMS & query.keys():
            entries = [e for e in entries if not is_restricted(e.get("resource") or {})]
        if query.get("_max-results", "").isdigit():
            entries = entries[: int(query["_max-results"])]
        return _Answer(200, {**body, "total": len(entries), "entry": entries}, {})


class StubTransport:
    """:class:`shared.pds.client.Transport` that calls the stand-in in process (no network)."""

    def __init__(self, stub: PdsStub) -> None:
        self.stub = stub

    def request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes | None = None,
    ) -> Reply:
        return self.stub.respond(method, path, params, headers)


def serve(stub: PdsStub, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Serve ``stub`` over HTTP on loopback (port 0: any free port). The caller runs ``serve_forever`` in a
    thread and calls ``shutdown()`` / ``server_close()``."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            url = urlsplit(self.path)
            base = url.path.split("/FHIR/R4", 1)[-1]
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)  # the stand-in does not apply patches: it moves the version
            reply = stub.respond(self.command, base, parse_qsl(url.query), dict(self.headers.items()))
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = _answer
        do_PATCH = _answer

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: request lines carry NHS numbers and demographics."""

    return ThreadingHTTPServer((host, port), Handler)
