"""``tie downstreams`` and ``tie certs``: the downstream inventory and the certificates it depends on.

tie downstreams               the registry as a table: name, direction, transport, format, auth,
                              credential reference, endpoint, owner (--json); never a secret
tie certs                     every certificate (referenced or stored), soonest expiry first (--json)
tie certs check               the expiry timer's scan now: metric + one alert per band and version
tie certs init-local          self-signed test certificates for the registry's local names (a local CA
                              issuing each one) into TIE_CREDENTIALS_DIR; never for production
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any


def add_credentials_parsers(sub: Any) -> None:
    downstreams = sub.add_parser("downstreams", help="the downstream registry as a table (no secrets)")
    downstreams.add_argument("--json", action="store_true", help="machine-readable output")
    downstreams.set_defaults(func=cmd_downstreams)

    certs = sub.add_parser("certs", help="certificates by days left; check expiry; local test certificates")
    certs.add_argument("--json", action="store_true", help="machine-readable output")
    certs_sub = certs.add_subparsers(dest="certs_cmd")
    check = certs_sub.add_parser("check", help="run the expiry scan now (metric, alerts once per band)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    init = certs_sub.add_parser("init-local", help="self-signed certificates for the local registry names")
    init.add_argument("--force", action="store_true", help="replace certificates that exist")
    init.add_argument("--days", type=int, default=365, help="validity of the leaf certificates")
    certs.set_defaults(func=cmd_certs)


def table(rows: Sequence[dict[str, str]]) -> str:
    """Aligned columns with a header; empty input -> a one-line note."""
    if not rows:
        return "(none)"
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(columns), *(line([str(r.get(c, "")) for c in columns]) for r in rows)])


def _show(rows: list[dict[str, str]], as_json: bool) -> None:
    print(json.dumps(rows, indent=2) if as_json else table(rows))


def cmd_downstreams(args: argparse.Namespace) -> int:
    from shared.config.settings import get_settings
    from shared.wiring import build_registry

    settings = get_settings()
    _show(build_registry(settings).table(settings.environment), args.json)
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    if args.certs_cmd == "init-local":
        return _init_local(args)
    from shared.config.settings import get_settings
    from shared.credentials.expiry import inventory
    from shared.wiring import (
        build_certificate_monitor,
        build_credential_provider,
        build_registry,
        get_container,
    )

    settings = get_settings()
    if args.certs_cmd == "check":
        report = build_certificate_monitor(get_container()).scan()
        rows = [s.row() for s in report.statuses]
        _show(rows, args.json)
        for name, version, band in report.announced:
            print(f"announced: {name} {version} {band}")
        return 1 if report.failed else 0
    # Listing only: nothing is published, so the bus and records are not needed.
    statuses = inventory(
        build_credential_provider(settings),
        referenced=build_registry(settings).certificate_names(settings.environment),
        now=datetime.now(UTC),
    )
    _show([s.row() for s in statuses], args.json)
    return 0


def _init_local(args: argparse.Namespace) -> int:
    from shared.config.settings import Backend, get_settings
    from shared.credentials import selfsigned
    from shared.wiring import build_registry

    settings = get_settings()
    if settings.credentials_backend is not Backend.EMBEDDED:
        print("init-local writes test certificates for the embedded provider only")
        return 2
    folder = settings.credentials_path
    registry = build_registry(settings)
    trust_names = {
        name
        for d in registry
        if d.trust is not None and (name := d.trust.name_for(settings.environment)) is not None
    }
    leaf_names = registry.certificate_names(settings.environment) - trust_names
    now = datetime.now(UTC)
    ca_name = "tie-local-ca"
    existing = {p.stem for p in folder.glob("*.pem")} if folder.is_dir() else set()
    if existing and not args.force:
        print(f"{folder} already holds certificates; --force replaces them")
        return 1
    ca = selfsigned.make_ca("TIE local test CA", now=now)
    written = []
    for name in sorted(trust_names | {ca_name}):
        selfsigned.write(folder, str(name), ca, with_key=False)
        written.append(str(name))
    for name in sorted(leaf_names):
        selfsigned.write(folder, name, selfsigned.issue(ca, name, now=now, days=args.days))
        written.append(name)
    print(f"wrote {len(written)} certificates to {folder}: {', '.join(written)}")
    return 0
