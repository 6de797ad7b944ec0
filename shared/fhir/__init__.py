"""FHIR R4 helpers shared by the mappers and the FHIR API: deterministic ids, UK Core profiles, JSON
encoding and validation (structural via fhir.resources R4B models + UK Core / terminology checks)."""
