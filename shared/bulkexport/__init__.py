"""FHIR Bulk Data export (``$export``), with a pseudonymised option: docs/bulk-export.md.

Modules: :mod:`.model` (request, job record, job store), :mod:`.api` (kick-off, status, cancel,
download), :mod:`.runner` (the worker the ``bulk_export_worker`` timer drives), :mod:`.pseudonymise`
(keyed references and the rules in ``pseudonymise_rules.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.bulkexport.api import BulkExportApi, ExportAccess, ExportConfig, ExportResponse
from shared.bulkexport.model import ExportRequest, Job, JobStatus, JobStore, Level
from shared.bulkexport.runner import ExportRunner

if TYPE_CHECKING:
    from shared.config.settings import Settings
    from shared.wiring import Container

__all__ = [
    "BulkExportApi",
    "ExportAccess",
    "ExportConfig",
    "ExportRequest",
    "ExportResponse",
    "ExportRunner",
    "Job",
    "JobStatus",
    "JobStore",
    "Level",
    "export_api_for",
    "export_runner_for",
    "pseudonym_key",
]

_UNRESOLVED_REFERENCE = "@Microsoft.KeyVault("


def pseudonym_key(settings: Settings) -> bytes | None:
    """``TIE_EXPORT_PSEUDONYM_KEY`` as bytes; None when unset or an unresolved Key Vault reference."""
    secret = settings.export_pseudonym_key
    if secret is None:
        return None
    value = secret.get_secret_value()
    if value.startswith(_UNRESOLVED_REFERENCE):
        return None
    return value.encode("utf-8")


def export_api_for(container: Container) -> BulkExportApi:
    settings = container.settings
    config = ExportConfig(
        access=ExportAccess.parse(settings.export_clients),
        base_url=settings.fhir_base_url,
        pseudonym_key_configured=pseudonym_key(settings) is not None,
    )
    return BulkExportApi(JobStore(container.records), container.blobs, config)


def export_runner_for(container: Container) -> ExportRunner:
    settings = container.settings
    return ExportRunner(
        container.fhir,
        container.blobs,
        JobStore(container.records),
        pseudonym_key=pseudonym_key(settings),
        max_file_bytes=settings.export_max_file_bytes,
    )
