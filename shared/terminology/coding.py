"""Value types shared by the terminology modules: :class:`Coding` and :class:`Equivalence`.

They are deliberately independent of the canonical model (``shared.canonical``) so that terminology data
can be loaded, validated and tested on its own; mappers convert a :class:`Coding` with one constructor call.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Coding:
    """A code in a code system (FHIR ``Coding``): ``system`` is a URI, ``code`` is case-sensitive."""

    system: str
    code: str
    display: str | None = None
    version: str | None = None


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
