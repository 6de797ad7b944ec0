"""The canonical clinical model: one shape between every wire format (HL7 v2, FHIR R4 UK Core, ...).

No HL7 or FHIR types live here. Every source maps once to these models (``shared/mapping``); every
consumer reads them. Distinctions that matter clinically are kept as distinct types: a medication
statement is not a medication request; an encounter is not a hospital stay (spell).
"""

from shared.canonical.model import *  # noqa: F403
from shared.canonical.model import __all__ as _model_all

__all__ = list(_model_all)
