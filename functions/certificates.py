"""Certificate expiry timer: every 6 hours, measure days remaining per certificate and announce thresholds.

Thin adapter over :class:`shared.credentials.expiry.CertificateExpiryMonitor` (gauge
``tie.certificate.days_remaining``; ``certificate.expiring`` / ``certificate.expired`` platform events at
90 / 30 / 7 days and at expiry, once per certificate version). Every 6 hours because the custom metric is
declared as emitted at least that often (``infra/bicep/config/custom-metrics.json``); the alert rules see
a stale metric as missing. ``tie certs`` runs the same scan on demand.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.wiring import build_certificate_monitor, get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]
_log = logging.getLogger("tie.certificates")


@bp.function_name("certificate_expiry")
@bp.timer_trigger(schedule="0 5 */6 * * *", arg_name="timer", use_monitor=False)
def certificate_expiry(timer: func.TimerRequest) -> None:
    report = build_certificate_monitor(get_container()).scan()
    _log.info(
        "certificates checked",
        extra={
            "count": len(report.statuses),
            "status": f"new={len(report.announced)} failed={report.failed}",
        },
    )
