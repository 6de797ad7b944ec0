"""Reconciliation timer: hourly; runs the daily reconciliation once it is 02:00 UK time.

Thin adapter over :meth:`shared.reconcile.service.Reconciler.run_if_due`: Azure's NCRONTAB runs in UTC
on Linux plans, so the timer fires every hour and the reconciler decides (in ``Europe/London``, so the
same local hour either side of a clock change) and claims the local day, so one run per day however
many instances fire (a firing missed at 02:00 is caught up later that day). ``tie reconcile`` runs the
same reconciliation on demand. See ``docs/reconciliation.md``.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.wiring import build_reconciler, get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]
_log = logging.getLogger("tie.reconcile")


@bp.function_name("reconcile")
@bp.timer_trigger(schedule="0 0 * * * *", arg_name="timer", use_monitor=True)
def reconcile(timer: func.TimerRequest) -> None:
    report = build_reconciler(get_container()).run_if_due()
    if report is None:
        return
    _log.info(
        "reconciliation finished",
        extra={"count": report.variance, "status": f"run={report.run_id} messages={report.messages}"},
    )
