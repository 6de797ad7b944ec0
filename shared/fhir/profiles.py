"""UK Core profile URLs and the FHIR-side constants the mapping and the validator share.

Profile canonical URLs follow ``https://fhir.hl7.org.uk/StructureDefinition/UKCore-<ResourceType>``:
the UK Core examples (``shared/corpora/uk-core-examples``) use exactly that spelling in ``meta.profile``
(``UKCore-Observation``) and for every ``Extension-UKCore-*`` URL, and the UK Core package names its
profiles ``UKCore-<Type>`` for every resource below.

Code-system, identifier-system and extension URIs live in :mod:`shared.terminology.systems` (each with
its source); they are re-exported here under the names the FHIR code uses.

NHS number verification status: UK Core (the examples) codes it in
``https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland``; the PDS FHIR API still
sends the older ``.../UKCore-NHSNumberVerificationStatus``. Both carry the NHS Data Dictionary codes
01-08 under the same extension URL. The mapper writes the UK Core (England) system; the validator
accepts either, since PDS-sourced resources pass through the API.
"""

from __future__ import annotations

from typing import Final

from shared.terminology import systems

UK_CORE_BASE: Final = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"

#: Resource types with a UK Core profile the engine writes or checks.
PROFILED_TYPES: Final = (
    "AllergyIntolerance",
    "Condition",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Location",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "ServiceRequest",
    "Specimen",
)

#: ``{"Patient": "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient", ...}``
UK_CORE_PROFILES: Final[dict[str, str]] = {t: f"{UK_CORE_BASE}{t}" for t in PROFILED_TYPES}


def profile_for(resource_type: str) -> str | None:
    """The UK Core profile URL for ``resource_type``, or ``None`` when the engine has none for it."""
    return UK_CORE_PROFILES.get(resource_type)


# Identifier systems
NHS_NUMBER_SYSTEM: Final = systems.NHS_NUMBER
ODS_ORGANIZATION_SYSTEM: Final = systems.ODS_ORGANIZATION_CODE
ODS_SITE_SYSTEM: Final = systems.ODS_SITE_CODE

# Extensions
EXT_NHS_NUMBER_VERIFICATION: Final = systems.EXT_NHS_NUMBER_VERIFICATION_STATUS
NHS_NUMBER_VERIFICATION_SYSTEM: Final = systems.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND
NHS_NUMBER_VERIFICATION_SYSTEMS: Final = frozenset(
    {systems.NHS_NUMBER_VERIFICATION_STATUS_ENGLAND, systems.NHS_NUMBER_VERIFICATION_STATUS_PDS}
)
EXT_DATA_ABSENT_REASON: Final = systems.EXT_DATA_ABSENT_REASON
DATA_ABSENT_REASON_SYSTEM: Final = systems.DATA_ABSENT_REASON
EXT_ETHNIC_CATEGORY: Final = systems.EXT_ETHNIC_CATEGORY

# Code systems used for fixed (structural) codes
CONFIDENTIALITY_SYSTEM: Final = systems.V3_CONFIDENTIALITY
ACT_CODE_SYSTEM: Final = systems.V3_ACT_CODE
PARTICIPATION_TYPE_SYSTEM: Final = systems.V3_PARTICIPATION_TYPE
IDENTIFIER_TYPE_SYSTEM: Final = systems.V2_0203_IDENTIFIER_TYPE
ALLERGY_CLINICAL_SYSTEM: Final = systems.ALLERGY_CLINICAL_STATUS
ALLERGY_VERIFICATION_SYSTEM: Final = systems.ALLERGY_VERIFICATION_STATUS
CONDITION_CLINICAL_SYSTEM: Final = systems.CONDITION_CLINICAL_STATUS
CONDITION_VERIFICATION_SYSTEM: Final = systems.CONDITION_VERIFICATION_STATUS
CONDITION_CATEGORY_SYSTEM: Final = systems.CONDITION_CATEGORY
