"""Reconciliation: what was sent versus what was received, per interface, ranked by variance.

See ``docs/reconciliation.md``. Pure core (no ``azure.*``): the journal, the in-flight index and the
record store give the engine's side; a FHIR repository (read-only) gives the destination's side.
"""
