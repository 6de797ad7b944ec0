"""HL7 v2 write-back over MESH: results (ORU^R01) sent to a MESH mailbox instead of an MLLP peer.

Used for the ``writeback-hl7v2`` subscription when ``TIE_MESH_OUTBOUND_RECIPIENT`` is set and no MLLP
host is. The message is the one the MLLP downstream would send; :class:`~shared.mesh.outbound.MeshOutbound`
sends it once per event version (local id = event key + content digest), records the MESH message id and
tracks delivery. A send in doubt (started, never recorded) is a permanent failure for a person to settle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from shared.backbone.errors import DownstreamRejected, DownstreamUnavailable
from shared.backbone.hl7_writeback import Hl7MllpDownstream
from shared.backbone.writeback import DownstreamResponse
from shared.canonical.identity import content_digest
from shared.canonical.model import ClinicalEvent, EventKind
from shared.mesh.errors import MeshRejected, MeshUnavailable
from shared.mesh.outbound import MeshOutbound
from shared.mesh.ports import MeshMailbox

HL7_CONTENT_TYPE = "x-application/hl7-v2+er7"
#: What MESH carries from this engine: results (pathology, radiology reports).
SENT_KINDS = frozenset({EventKind.RESULT})


class MeshHl7Downstream:
    """:class:`~shared.backbone.writeback.Downstream` sending the HL7 v2 rendering of an event via MESH."""

    def __init__(
        self,
        open_mailbox: Callable[[], MeshMailbox],
        outbound: MeshOutbound,
        *,
        recipient: str,
        workflow_id: str,
        name: str = "hl7v2",
        renderer: Hl7MllpDownstream | None = None,
    ) -> None:
        self.name = name
        self._open = open_mailbox
        self._outbound = outbound
        self._recipient = recipient
        self._workflow = workflow_id
        self._renderer = renderer or Hl7MllpDownstream(None, name=name)

    def skip_reason(self, event: ClinicalEvent) -> str | None:
        if event.kind not in SENT_KINDS:
            return f"kind-not-sent-by-mesh:{event.kind.value}"
        return None

    def apply(self, event: ClinicalEvent) -> DownstreamResponse:
        payload = self._renderer.message_for(event)
        digest = content_digest(json.loads(event.model_dump_json(exclude_defaults=True)))
        local_id = f"{event.key.value}~{digest[:16]}"
        try:
            mailbox = self._open()
            try:
                sent = self._outbound.send(
                    mailbox,
                    self._recipient,
                    payload,
                    local_id=local_id,
                    workflow_id=self._workflow,
                    subject=event.kind.value,
                    content_type=HL7_CONTENT_TYPE,
                    correlation_id=event.provenance.correlation_id,
                )
            finally:
                mailbox.close()
        except MeshUnavailable as exc:
            raise DownstreamUnavailable(self.name, f"MESH unavailable ({exc.code})") from None
        except MeshRejected as exc:
            raise DownstreamRejected(self.name, f"MESH refused the send ({exc.code})") from None
        return DownstreamResponse(
            status="sent",
            summary=f"MESH message {sent.message_id} to {self._recipient}"
            + (" (already sent)" if sent.duplicate else ""),
            details={"mesh_message_id": sent.message_id, "duplicate": sent.duplicate},
        )

    def payload_digest(self, event: ClinicalEvent) -> str:
        return hashlib.sha256(self._renderer.message_for(event)).hexdigest()

    def close(self) -> None:
        return None
