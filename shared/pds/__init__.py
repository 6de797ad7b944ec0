"""NHS Personal Demographics Service (PDS FHIR API): retrieval, identity trace and the write-back gate.

Design and IG policy: ``docs/pds-and-mesh.md``.
"""
