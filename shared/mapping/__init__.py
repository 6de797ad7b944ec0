"""Mappings between wire formats and the canonical model, with field-level lineage.

* ``hl7v2_in``  — HL7 v2 message -> :class:`~shared.canonical.ClinicalEvent`
* ``fhir_out``  — canonical -> FHIR R4 (UK Core) transaction Bundle
* ``fhir_in``   — FHIR R4 resources -> canonical
* ``hl7v2_out`` — canonical -> HL7 v2 (ADT^A08, ORU^R01) for write-back

Every mapping can return, next to its output, the lineage of each populated element (see ``lineage.py``).
Code translation goes through ``shared.terminology`` (concept maps as versioned data), never if/elif.
"""
