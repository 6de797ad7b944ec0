"""URIs of the code systems, identifier systems and extensions the engine reads or writes.

Every constant says where its exact spelling was taken from:

* **FHIR R4** - the FHIR R4 (4.0.1) specification / HL7 Terminology (THO) canonical URL;
* **UK Core ex.** - used verbatim in the UK Core examples (``shared/corpora/uk-core-examples``, from
  NHSDigital/FHIR-R4-UKCORE-STAGING-MAIN);
* **PDS** - used verbatim by the NHS PDS FHIR API sandbox responses (``shared/corpora/nhs-pds-fhir-api``);
* **v2-to-FHIR** - the HL7 v2-to-FHIR IG concept maps (HL7/v2-to-fhir ``mappings/codesystems``).

Nothing here is guessed: a URI that could not be confirmed from one of those sources is left out.

Note on NHS number verification status: UK Core names the code system
``.../UKCore-NHSNumberVerificationStatusEngland`` (UK Core ex.), while PDS still sends the older
``.../UKCore-NHSNumberVerificationStatus`` (PDS). Both carry the same NHS Data Dictionary codes 01-08;
the concept map ``pds-nhs-number-verification-status-to-uk-core`` converts the PDS system to UK Core.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------------------------------
# HL7 v2 tables (HL7 Terminology, FHIR R4: http://terminology.hl7.org/CodeSystem/v2-XXXX)
# --------------------------------------------------------------------------------------------------

V2_TABLE_BASE = "http://terminology.hl7.org/CodeSystem/v2-"
_V2_TABLE = re.compile(r"\d{4}")


def v2_table_system(table: str) -> str:
    """Code system URI of HL7 v2 table ``table`` (four digits, e.g. ``"0001"``).

    Raises :class:`ValueError` for anything else (``"1"``, ``"HL70001"``): table ids are zero-padded.
    """
    if not _V2_TABLE.fullmatch(table):
        raise ValueError(f"HL7 v2 table id must be four digits, got {table[:10]!r}")
    return f"{V2_TABLE_BASE}{table}"


V2_0001_ADMINISTRATIVE_SEX = v2_table_system("0001")  # FHIR R4 / v2-to-FHIR
V2_0002_MARITAL_STATUS = v2_table_system("0002")  # FHIR R4 / v2-to-FHIR (PID-16; HL7 UK: NHS DD codes)
V2_0004_PATIENT_CLASS = v2_table_system("0004")  # FHIR R4 / v2-to-FHIR
V2_0007_ADMISSION_TYPE = v2_table_system("0007")  # FHIR R4 / v2-to-FHIR
V2_0023_ADMIT_SOURCE = v2_table_system("0023")  # FHIR R4 / v2-to-FHIR (PV1-14; HL7 UK: NHS DD codes)
V2_0027_PRIORITY = v2_table_system("0027")  # FHIR R4 / v2-to-FHIR (TQ.6 / TQ1-9 priority)
V2_0038_ORDER_STATUS = v2_table_system("0038")  # FHIR R4 / v2-to-FHIR
V2_0063_RELATIONSHIP = v2_table_system("0063")  # FHIR R4 / v2-to-FHIR
V2_0074_DIAGNOSTIC_SERVICE_SECTION = v2_table_system("0074")  # UK Core ex. (DiagnosticReport.category)
V2_0070_SPECIMEN_SOURCE = v2_table_system("0070")  # OBR-15.1 specimen source (v2.3/v2.4)
V2_0487_SPECIMEN_TYPE = v2_table_system("0487")  # SPM-4 specimen type (v2.5+)
V2_0078_ABNORMAL_FLAGS = v2_table_system("0078")  # FHIR R4 / v2-to-FHIR
V2_0085_OBSERVATION_RESULT_STATUS = v2_table_system("0085")  # FHIR R4 / v2-to-FHIR
V2_0112_DISCHARGE_DISPOSITION = v2_table_system("0112")  # FHIR R4 (PV1-36; HL7 UK: NHS DD codes)
V2_0119_ORDER_CONTROL = v2_table_system("0119")  # FHIR R4 / v2-to-FHIR
V2_0123_RESULT_STATUS = v2_table_system("0123")  # FHIR R4 / v2-to-FHIR
V2_0131_CONTACT_ROLE = v2_table_system("0131")  # PDS (RelatedPerson / Patient.contact relationship)
V2_0189_ETHNIC_GROUP = v2_table_system("0189")  # FHIR R4 (PID-22; HL7 UK: NHS DD codes)
V2_0190_ADDRESS_TYPE = v2_table_system("0190")  # FHIR R4 / v2-to-FHIR (XAD.7)
V2_0200_NAME_TYPE = v2_table_system("0200")  # FHIR R4 / v2-to-FHIR (XPN.7)
V2_0201_TELECOM_USE = v2_table_system("0201")  # FHIR R4 / v2-to-FHIR (XTN.2)
V2_0202_TELECOM_EQUIPMENT_TYPE = v2_table_system("0202")  # FHIR R4 / v2-to-FHIR (XTN.3)
V2_0203_IDENTIFIER_TYPE = v2_table_system("0203")  # FHIR R4 (Identifier.type binding)
V2_0276_APPOINTMENT_REASON = v2_table_system("0276")  # UK Core ex. (Appointment)
#: User-defined table 0445 (PID-32 identity reliability code). The HL7 UK / NHS ITK ADT convention adds
#: NSTS01..NSTS08 (NHS number status indicator 01..08) to it; THO's v2-0445 lists only the HL7 codes.
V2_0445_IDENTITY_RELIABILITY = v2_table_system("0445")  # FHIR R4 / HL7 UK ITK ADT

# --------------------------------------------------------------------------------------------------
# FHIR R4 core code systems (http://hl7.org/fhir/...)
# --------------------------------------------------------------------------------------------------

ADMINISTRATIVE_GENDER = "http://hl7.org/fhir/administrative-gender"  # FHIR R4
OBSERVATION_STATUS = "http://hl7.org/fhir/observation-status"  # FHIR R4
ENCOUNTER_STATUS = "http://hl7.org/fhir/encounter-status"  # FHIR R4
DIAGNOSTIC_REPORT_STATUS = "http://hl7.org/fhir/diagnostic-report-status"  # FHIR R4 / v2-to-FHIR
REQUEST_STATUS = "http://hl7.org/fhir/request-status"  # FHIR R4 / v2-to-FHIR
REQUEST_INTENT = "http://hl7.org/fhir/request-intent"  # FHIR R4
REQUEST_PRIORITY = "http://hl7.org/fhir/request-priority"  # FHIR R4 (ServiceRequest.priority)
NAME_USE = "http://hl7.org/fhir/name-use"  # FHIR R4 / v2-to-FHIR (HumanName.use)
ADDRESS_USE = "http://hl7.org/fhir/address-use"  # FHIR R4 (Address.use)
ADDRESS_TYPE = "http://hl7.org/fhir/address-type"  # FHIR R4 / v2-to-FHIR (Address.type)
CONTACT_POINT_SYSTEM = "http://hl7.org/fhir/contact-point-system"  # FHIR R4 (ContactPoint.system)
CONTACT_POINT_USE = "http://hl7.org/fhir/contact-point-use"  # FHIR R4 / v2-to-FHIR (ContactPoint.use)

# --------------------------------------------------------------------------------------------------
# HL7 Terminology (THO) code systems
# --------------------------------------------------------------------------------------------------

V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"  # UK Core ex. (Encounter.class)
V3_ACT_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"  # FHIR R4 (Encounter.priority)
V3_OBSERVATION_INTERPRETATION = (
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"  # FHIR R4 / v2-to-FHIR
)
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"  # UK Core ex.
V3_MARITAL_STATUS = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"  # UK Core (marital status VS)
V3_NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"  # UK Core (marital status VS: UNK)
V3_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"  # PDS (meta.security U/R/V)
V3_PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"  # UK Core ex.
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"  # UK Core ex.
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"  # UK Core ex.
ALLERGY_CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"  # UK Core ex.
ALLERGY_VERIFICATION_STATUS = (
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"  # UK Core ex.
)
CONDITION_CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"  # UK Core ex.
CONDITION_VERIFICATION_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"  # UK Core ex.
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"  # UK Core ex.

# --------------------------------------------------------------------------------------------------
# External terminologies
# --------------------------------------------------------------------------------------------------

SNOMED_CT = "http://snomed.info/sct"  # UK Core ex.
LOINC = "http://loinc.org"  # UK Core ex.
UCUM = "http://unitsofmeasure.org"  # UK Core ex.
ICD10 = "http://hl7.org/fhir/sid/icd-10"  # FHIR R4 (WHO ICD-10)
#: ICD-10 5th Edition (UK), as published on the NHS England terminology server (ontology.nhs.uk).
ICD10_UK = "http://hl7.org/fhir/sid/icd-10-uk"
BCP47 = "urn:ietf:bcp:47"  # UK Core ex. (communication.language)

# --------------------------------------------------------------------------------------------------
# UK Core / NHS England code systems
# --------------------------------------------------------------------------------------------------

UK_CORE_CODE_SYSTEM_BASE = "https://fhir.hl7.org.uk/CodeSystem/"

NHS_NUMBER_VERIFICATION_STATUS_ENGLAND = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"  # UK Core ex.
)
#: The pre-"England" spelling that the PDS FHIR API still returns (same codes 01-08).
NHS_NUMBER_VERIFICATION_STATUS_PDS = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
ETHNIC_CATEGORY_ENGLAND = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"  # UK Core ex.
ADMISSION_METHOD_ENGLAND = "https://fhir.hl7.org.uk/CodeSystem/UKCore-AdmissionMethodEngland"  # UK Core ex.
DISCHARGE_METHOD_ENGLAND = "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeMethodEngland"  # UK Core ex.
DISCHARGE_DESTINATION_ENGLAND = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeDestinationEngland"  # UK Core ex.
)
SOURCE_OF_ADMISSION_ENGLAND = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-SourceOfAdmissionEngland"  # UK Core conformance (STU2)
)
PERSON_MARITAL_STATUS_ENGLAND = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-PersonMaritalStatusEngland"  # UK Core conformance (STU2)
)
DEATH_NOTIFICATION_STATUS = "https://fhir.hl7.org.uk/CodeSystem/UKCore-DeathNotificationStatus"  # UK Core/PDS
RESIDENTIAL_STATUS = "https://fhir.hl7.org.uk/CodeSystem/UKCore-ResidentialStatus"  # UK Core ex.
ADDITIONAL_PERSON_RELATIONSHIP_ROLE = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-AdditionalPersonRelationshipRole"  # UK Core ex.
)
#: PDS's spelling for related-person roles (``https://fhir.nhs.uk/R4/...``), kept as PDS sends it.
PDS_ADDITIONAL_RELATED_PERSON_ROLE = "https://fhir.nhs.uk/R4/CodeSystem/UKCore-AdditionalRelatedPersonRole"
PREFERRED_CONTACT_METHOD = "https://fhir.hl7.org.uk/CodeSystem/UKCore-PreferredContactMethod"  # UK Core/PDS
PREFERRED_WRITTEN_COMMUNICATION_FORMAT = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-PreferredWrittenCommunicationFormat"  # UK Core/PDS
)
HUMAN_LANGUAGE = "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage"  # PDS
ADDRESS_KEY_TYPE = "https://fhir.hl7.org.uk/CodeSystem/UKCore-AddressKeyType"  # PDS
RECORD_STANDARD_HEADINGS = "https://fhir.hl7.org.uk/CodeSystem/UKCore-RecordStandardHeadings"  # UK Core ex.

# --------------------------------------------------------------------------------------------------
# Identifier systems (Identifier.system)
# --------------------------------------------------------------------------------------------------

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"  # UK Core ex. / PDS
ODS_ORGANIZATION_CODE = "https://fhir.nhs.uk/Id/ods-organization-code"  # UK Core ex. / PDS
ODS_SITE_CODE = "https://fhir.nhs.uk/Id/ods-site-code"  # UK Core ex.
SDS_USER_ID = "https://fhir.nhs.uk/Id/sds-user-id"  # UK Core ex.
SDS_ROLE_PROFILE_ID = "https://fhir.nhs.uk/Id/sds-role-profile-id"  # UK Core ex.
GMC_NUMBER = "https://fhir.hl7.org.uk/Id/gmc-number"  # UK Core ex.
GMP_NUMBER = "https://fhir.hl7.org.uk/Id/gmp-number"  # UK Core ex.
GPHC_NUMBER = "https://fhir.hl7.org.uk/Id/gphc-number"  # UK Core ex.
RFC4122_UUID = "https://tools.ietf.org/html/rfc4122"  # UK Core ex. (business identifiers that are UUIDs)

# --------------------------------------------------------------------------------------------------
# Extension URLs
# --------------------------------------------------------------------------------------------------

EXT_NHS_NUMBER_VERIFICATION_STATUS = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"  # UK Core/PDS
)
EXT_ETHNIC_CATEGORY = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"  # UK Core
EXT_ADMISSION_METHOD = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AdmissionMethod"  # UK Core
)
EXT_DISCHARGE_METHOD = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DischargeMethod"  # UK Core
)
EXT_DEATH_NOTIFICATION_STATUS = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DeathNotificationStatus"  # UK Core/PDS
)
EXT_RESIDENTIAL_STATUS = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ResidentialStatus"  # UK Core ex.
)
EXT_CONTACT_RANK = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactRank"  # UK Core ex.
EXT_ADDRESS_KEY = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AddressKey"  # PDS
EXT_DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"  # FHIR R4

# --------------------------------------------------------------------------------------------------
# Local (trust) code systems
# --------------------------------------------------------------------------------------------------

#: Base for code systems owned by the deploying trust. The value is a deliberately fictional example
#: domain: a real deployment ships its own local concept maps with its own (registered) base.
LOCAL_CODE_SYSTEM_BASE = "https://fhir.example-trust.nhs.uk/CodeSystem/"
#: The example trust's pathology (LIMS) test codes, as sent in OBX-3 / OBR-4.
LOCAL_LAB = f"{LOCAL_CODE_SYSTEM_BASE}local-lab"

# --------------------------------------------------------------------------------------------------
# Registries (what tests check concept-map and value-set systems against)
# --------------------------------------------------------------------------------------------------

CODE_SYSTEMS: frozenset[str] = frozenset(
    {
        V2_0001_ADMINISTRATIVE_SEX,
        V2_0002_MARITAL_STATUS,
        V2_0004_PATIENT_CLASS,
        V2_0007_ADMISSION_TYPE,
        V2_0023_ADMIT_SOURCE,
        V2_0027_PRIORITY,
        V2_0038_ORDER_STATUS,
        V2_0063_RELATIONSHIP,
        V2_0074_DIAGNOSTIC_SERVICE_SECTION,
        V2_0070_SPECIMEN_SOURCE,
        V2_0487_SPECIMEN_TYPE,
        V2_0078_ABNORMAL_FLAGS,
        V2_0085_OBSERVATION_RESULT_STATUS,
        V2_0112_DISCHARGE_DISPOSITION,
        V2_0119_ORDER_CONTROL,
        V2_0123_RESULT_STATUS,
        V2_0131_CONTACT_ROLE,
        V2_0189_ETHNIC_GROUP,
        V2_0190_ADDRESS_TYPE,
        V2_0200_NAME_TYPE,
        V2_0201_TELECOM_USE,
        V2_0202_TELECOM_EQUIPMENT_TYPE,
        V2_0203_IDENTIFIER_TYPE,
        V2_0276_APPOINTMENT_REASON,
        V2_0445_IDENTITY_RELIABILITY,
        ADMINISTRATIVE_GENDER,
        OBSERVATION_STATUS,
        ENCOUNTER_STATUS,
        DIAGNOSTIC_REPORT_STATUS,
        REQUEST_STATUS,
        REQUEST_INTENT,
        REQUEST_PRIORITY,
        NAME_USE,
        ADDRESS_USE,
        ADDRESS_TYPE,
        CONTACT_POINT_SYSTEM,
        CONTACT_POINT_USE,
        V3_ACT_CODE,
        V3_ACT_PRIORITY,
        V3_OBSERVATION_INTERPRETATION,
        V3_ROLE_CODE,
        V3_MARITAL_STATUS,
        V3_NULL_FLAVOR,
        V3_CONFIDENTIALITY,
        V3_PARTICIPATION_TYPE,
        DATA_ABSENT_REASON,
        OBSERVATION_CATEGORY,
        ALLERGY_CLINICAL_STATUS,
        ALLERGY_VERIFICATION_STATUS,
        CONDITION_CLINICAL_STATUS,
        CONDITION_VERIFICATION_STATUS,
        CONDITION_CATEGORY,
        SNOMED_CT,
        LOINC,
        UCUM,
        ICD10,
        ICD10_UK,
        BCP47,
        NHS_NUMBER_VERIFICATION_STATUS_ENGLAND,
        NHS_NUMBER_VERIFICATION_STATUS_PDS,
        ETHNIC_CATEGORY_ENGLAND,
        ADMISSION_METHOD_ENGLAND,
        DISCHARGE_METHOD_ENGLAND,
        DISCHARGE_DESTINATION_ENGLAND,
        SOURCE_OF_ADMISSION_ENGLAND,
        PERSON_MARITAL_STATUS_ENGLAND,
        DEATH_NOTIFICATION_STATUS,
        RESIDENTIAL_STATUS,
        ADDITIONAL_PERSON_RELATIONSHIP_ROLE,
        PDS_ADDITIONAL_RELATED_PERSON_ROLE,
        PREFERRED_CONTACT_METHOD,
        PREFERRED_WRITTEN_COMMUNICATION_FORMAT,
        HUMAN_LANGUAGE,
        ADDRESS_KEY_TYPE,
        RECORD_STANDARD_HEADINGS,
        LOCAL_LAB,
    }
)

IDENTIFIER_SYSTEMS: frozenset[str] = frozenset(
    {
        NHS_NUMBER,
        ODS_ORGANIZATION_CODE,
        ODS_SITE_CODE,
        SDS_USER_ID,
        SDS_ROLE_PROFILE_ID,
        GMC_NUMBER,
        GMP_NUMBER,
        GPHC_NUMBER,
        RFC4122_UUID,
    }
)

EXTENSIONS: frozenset[str] = frozenset(
    {
        EXT_NHS_NUMBER_VERIFICATION_STATUS,
        EXT_ETHNIC_CATEGORY,
        EXT_ADMISSION_METHOD,
        EXT_DISCHARGE_METHOD,
        EXT_DEATH_NOTIFICATION_STATUS,
        EXT_RESIDENTIAL_STATUS,
        EXT_CONTACT_RANK,
        EXT_ADDRESS_KEY,
        EXT_DATA_ABSENT_REASON,
    }
)


def is_known_code_system(uri: str) -> bool:
    """True when ``uri`` is one of :data:`CODE_SYSTEMS` or any HL7 v2 table system."""
    if uri in CODE_SYSTEMS:
        return True
    return uri.startswith(V2_TABLE_BASE) and bool(_V2_TABLE.fullmatch(uri[len(V2_TABLE_BASE) :]))
