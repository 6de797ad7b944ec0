"""Certificate lifecycle: days remaining per certificate (metric) and one alert per threshold crossed.

:class:`CertificateExpiryMonitor` (timer ``certificate_expiry`` in ``functions/certificates.py``, daily,
and ``tie certs`` on demand) inventories every certificate the registry references in this environment
plus every certificate the store holds, and per certificate:

* sets the gauge ``tie.certificate.days_remaining`` (dimension ``certificate``: its name) - the metric the
  Bicep alert rules ``cert-expiry-90d/-30d/-7d`` query (``infra/bicep/config/custom-metrics.json``;
  ``tests/unit/credentials/test_expiry.py`` checks the names match);
* when it is inside a band - ``90d`` (<= 90 days), ``30d``, ``7d``, ``expired`` - publishes **one**
  platform event for that band and that certificate *version*: ``certificate.expiring`` (severity
  warning / error / critical) or ``certificate.expired`` (critical). The claim is an insert-if-absent in
  table ``certalerts`` (partition: certificate name; row: version and band), so re-running the timer, or
  two instances running it, does not alert again; a rotated certificate is a new version and starts
  afresh. Only the band the certificate is in now is announced (first seen 10 days out: ``30d``; then
  ``7d``, then ``expired``; ``90d`` is not sent late). If publishing fails the claim is removed, so the
  next run retries.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from shared.credentials.errors import CredentialInvalid, CredentialNotFound, CredentialUnavailable
from shared.credentials.model import CertificateInfo
from shared.credentials.ports import CredentialProvider, PlatformAlerts
from shared.errors import TieError
from shared.observability.metrics import Metrics, OpenTelemetryMetrics
from shared.storage.errors import ConcurrencyConflict, RecordExists, RecordNotFound
from shared.storage.keys import safe_key
from shared.storage.names import TABLE_CERT_ALERTS
from shared.storage.ports import RecordStore

_log = logging.getLogger("tie.credentials.expiry")

#: Gauge the alert rules query (``infra/bicep/config/custom-metrics.json`` ``certificateDaysRemaining``).
DAYS_REMAINING_METRIC: Final = "tie.certificate.days_remaining"
DAYS_REMAINING_UNIT: Final = "d"
DAYS_REMAINING_DIMENSION: Final = "certificate"
#: Alert thresholds in days, largest first (the Bicep ``certificateExpiryDays`` parameter).
THRESHOLDS: Final = (90, 30, 7)

Band = Literal["90d", "30d", "7d", "expired"]
Severity = Literal["info", "warning", "error", "critical"]
SEVERITY: Final[dict[str, Severity]] = {
    "90d": "warning",
    "30d": "error",
    "7d": "critical",
    "expired": "critical",
}


def band(info: CertificateInfo, now: datetime, thresholds: Iterable[int] = THRESHOLDS) -> Band | None:
    """The most severe band ``info`` is in at ``now`` (``None``: more than the largest threshold away)."""
    if now >= info.not_after:
        return "expired"
    days = info.days_remaining(now)
    crossed = [t for t in thresholds if days <= t]
    return f"{min(crossed)}d" if crossed else None  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    name: str
    info: CertificateInfo | None
    days_remaining: int | None
    band: Band | None
    #: Error code when the certificate could not be read (``credential-not-found`` ...).
    error: str | None = None

    def row(self) -> dict[str, str]:
        """``tie certs``: one row, public facts only."""
        info = self.info
        return {
            "certificate": self.name,
            "days": "-" if self.days_remaining is None else str(self.days_remaining),
            "band": self.band or ("-" if self.error is None else self.error),
            "expires": info.not_after.isoformat() if info else "-",
            "version": info.version if info else "-",
            "thumbprint": info.thumbprint[:16] if info else "-",
            "subject": info.subject if info else "-",
            "source": info.source if info else "-",
        }


@dataclass(slots=True)
class ExpiryReport:
    statuses: list[CertificateStatus] = field(default_factory=list)
    #: (certificate, version, band) announced by this run.
    announced: list[tuple[str, str, str]] = field(default_factory=list)
    #: Announcements whose platform event could not be published (retried next run).
    failed: int = 0


def event_id(name: str, version: str, band_name: str) -> str:
    return "cert-" + hashlib.sha256(f"{name}\x1f{version}\x1f{band_name}".encode()).hexdigest()[:32]


def inventory(
    provider: CredentialProvider,
    *,
    referenced: Iterable[str],
    now: datetime,
    thresholds: Iterable[int] = THRESHOLDS,
) -> list[CertificateStatus]:
    """Every certificate the registry references or the store holds, soonest expiry first; those that
    cannot be read last, with their error code (``tie certs``; the monitor's scan)."""
    limits = tuple(thresholds)
    infos: dict[str, CertificateInfo] = {}
    errors: dict[str, str] = {}
    try:
        for info in provider.list_certificates():
            infos[info.name] = info
    except (CredentialUnavailable, CredentialInvalid) as exc:
        errors["(store)"] = exc.code
    for name in sorted(set(referenced) - infos.keys()):
        try:
            infos[name] = provider.certificate_info(name)
        except (CredentialNotFound, CredentialUnavailable, CredentialInvalid) as exc:
            errors[name] = exc.code
    statuses = [
        CertificateStatus(n, i, i.days_remaining(now), band(i, now, limits)) for n, i in infos.items()
    ]
    statuses.sort(key=lambda s: (s.days_remaining if s.days_remaining is not None else 0, s.name))
    statuses += [CertificateStatus(n, None, None, None, code) for n, code in sorted(errors.items())]
    return statuses


class CertificateExpiryMonitor:
    def __init__(
        self,
        provider: CredentialProvider,
        records: RecordStore,
        alerts: PlatformAlerts,
        *,
        referenced: Iterable[str] = (),
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] | None = None,
        thresholds: Iterable[int] = THRESHOLDS,
    ) -> None:
        self._provider = provider
        self._records = records
        self._alerts = alerts
        self._referenced = frozenset(referenced)
        self._metrics: Metrics = metrics if metrics is not None else OpenTelemetryMetrics()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._thresholds = tuple(sorted(thresholds, reverse=True))

    def inventory(self) -> list[CertificateStatus]:
        """Every certificate (referenced or stored), soonest expiry first; unreadable ones last."""
        return inventory(
            self._provider, referenced=self._referenced, now=self._clock(), thresholds=self._thresholds
        )

    def scan(self) -> ExpiryReport:
        now = self._clock()
        report = ExpiryReport(statuses=self.inventory())
        for status in report.statuses:
            info = status.info
            if info is None or status.days_remaining is None:
                _log.warning("certificate unreadable", extra={"status": status.error, "reason": status.name})
                continue
            self._metrics.gauge(
                DAYS_REMAINING_METRIC,
                status.days_remaining,
                unit=DAYS_REMAINING_UNIT,
                attributes={DAYS_REMAINING_DIMENSION: info.name},
            )
            if status.band is None:
                continue
            outcome = self._announce(info, status.band, status.days_remaining, now)
            if outcome is True:
                report.announced.append((info.name, info.version, status.band))
            elif outcome is False:
                report.failed += 1
        return report

    def _announce(self, info: CertificateInfo, band_name: Band, days: int, now: datetime) -> bool | None:
        """True: announced now; None: announced before (or by another instance); False: not published."""
        partition, row = safe_key(info.name), safe_key(f"{info.version}~{band_name}")
        try:
            claimed = self._records.insert(
                TABLE_CERT_ALERTS,
                partition,
                row,
                {"certificate": info.name, "version": info.version, "band": band_name, "at": now.isoformat()},
            )
        except (RecordExists, ConcurrencyConflict):
            return None
        try:
            self._alerts.publish(
                "certificate.expired" if band_name == "expired" else "certificate.expiring",
                event_id=event_id(info.name, info.version, band_name),
                subject=f"certificates/{info.name}",
                severity=SEVERITY[band_name],
                details={
                    "certificate": info.name,
                    "version": info.version,
                    "thumbprint": info.thumbprint,
                    "band": band_name,
                    "days_remaining": days,
                    "not_after": info.not_after.isoformat(),
                    "source": info.source,
                },
                time=now,
            )
        except TieError as exc:
            with contextlib.suppress(ConcurrencyConflict, RecordNotFound):
                self._records.delete(TABLE_CERT_ALERTS, partition, row, etag=claimed.etag)
            _log.warning("certificate alert not published", extra={"error_code": exc.code})
            return False
        _log.warning(
            "certificate expiry threshold crossed",
            extra={"reason": band_name, "status": f"{info.name} {info.version} days={days}"},
        )
        return True
