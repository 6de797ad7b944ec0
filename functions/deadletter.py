"""Dead-letter monitor: every 30 s, peek each subscription's dead-letter sub-queue and record what is new.

Nothing is received or completed here - dead letters stay on the bus until an operator replays or purges
them (``tie dlq ...``). New ones are recorded (reason, delivery count, correlation ID, last error code),
journaled as ``dead-lettered`` and announced as ``deadletter.recorded`` platform events for alerting
(:mod:`shared.backbone.deadletter`).
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.wiring import get_container

bp = func.Blueprint()  # type: ignore[no-untyped-call]
_log = logging.getLogger("tie.deadletter")


@bp.function_name("deadletter_monitor")
@bp.timer_trigger(schedule="*/30 * * * * *", arg_name="timer", use_monitor=False)
def deadletter_monitor(timer: func.TimerRequest) -> None:
    report = get_container().backbone.scan_dead_letters()
    if report.recorded or report.backlogged or report.failed:
        _log.warning(
            "dead letters",
            extra={"count": report.recorded, "status": f"seen={report.seen} failed={report.failed}"},
        )
