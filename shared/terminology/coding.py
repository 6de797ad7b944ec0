"""Value types of the terminology modules: :class:`Coding` (the canonical model's) and :class:`Equivalence`.

``Coding`` is :class:`shared.canonical.model.Coding`, so a mapped code goes into the canonical model as it
is; ``shared.canonical.model`` imports nothing from ``shared`` (only pydantic), so terminology data still
loads and tests on its own.
"""

from __future__ import annotations

from enum import StrEnum

from shared.canonical.model import Coding

__all__ = ["Coding", "Equivalence"]


class Equivalence(StrEnum):
    """FHIR R4 ``ConceptMapEquivalence`` (http://hl7.org/fhir/concept-map-equivalence).

    Read as "the TARGET is <equivalence> the source": ``wider`` = the target means more than the source
    (e.g. v2 ``A`` Ambiguous -> FHIR ``other``); ``narrower`` = the target means less (e.g. SNOMED
    "Asthma" -> ICD-10 J45.9 "Asthma, unspecified"). ``unmatched`` records a deliberate "no target";
    ``disjoint`` says the concepts do not overlap. Neither of those two is a usable mapping.
    """

    RELATEDTO = "relatedto"
    EQUIVALENT = "equivalent"
    EQUAL = "equal"
    WIDER = "wider"
    SUBSUMES = "subsumes"
    NARROWER = "narrower"
    SPECIALIZES = "specializes"
    INEXACT = "inexact"
    UNMATCHED = "unmatched"
    DISJOINT = "disjoint"

    @property
    def is_match(self) -> bool:
        """True for every equivalence that asserts a usable mapping (all but unmatched/disjoint)."""
        return self not in (Equivalence.UNMATCHED, Equivalence.DISJOINT)

    def reversed(self) -> Equivalence:
        """The equivalence seen from the other side (target -> source): wider<->narrower,
        subsumes<->specializes; the symmetric ones are unchanged."""
        return _REVERSED.get(self, self)


_REVERSED = {
    Equivalence.WIDER: Equivalence.NARROWER,
    Equivalence.NARROWER: Equivalence.WIDER,
    Equivalence.SUBSUMES: Equivalence.SPECIALIZES,
    Equivalence.SPECIALIZES: Equivalence.SUBSUMES,
}
