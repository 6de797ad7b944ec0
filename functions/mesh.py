"""MESH inbound: every minute, poll each mailbox in ``TIE_MESH_MAILBOXES`` (``shared/mesh``).

Each message is stored durably, fed to the ingest pipeline (HL7 v2 as over HTTP / MLLP, correlation id =
MESH message id) and only then acknowledged; unknown workflows are quarantined. Outbound tracking of sent
messages is refreshed on the same tick.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.wiring import get_container, poll_mesh

bp = func.Blueprint()  # type: ignore[no-untyped-call]
_log = logging.getLogger("tie.mesh")


@bp.function_name("mesh_poll")
@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", use_monitor=False)
def mesh_poll(timer: func.TimerRequest) -> None:
    container = get_container()
    if not container.settings.mesh_mailbox_list:
        return
    reports = poll_mesh(container)
    for report in reports:
        if report.listed or report.failed:
            _log.info(
                "mesh poll",
                extra={
                    "mailbox": report.mailbox,
                    "count": report.acknowledged,
                    "status": f"listed={report.listed} ingested={report.ingested} "
                    f"quarantined={report.quarantined} retried={report.retried} failed={report.failed}",
                },
            )
