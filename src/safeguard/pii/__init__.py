"""PII/PHI scrubbing of training data on Presidio, with HIPAA Safe Harbor recognizers.

>>> from safeguard.pii import Scrubber                                   # doctest: +SKIP
>>> Scrubber.from_policy("healthcare-hipaa").scrub("Pt John Smith, MRN 448812").text  # doctest: +SKIP
'Pt <PERSON_1>, MRN <MEDICAL_RECORD_NUMBER_1>'

Importing this package loads neither Presidio, spaCy nor torch; they are imported when a
:class:`Scrubber` first analyses text.
"""

from __future__ import annotations

from safeguard.pii.config import ScrubConfig, known_entities
from safeguard.pii.keys import PseudonymKey
from safeguard.pii.scrubber import Scrubber
from safeguard.pii.types import Finding, ScrubResult

__all__ = [
    "Finding",
    "PseudonymKey",
    "ScrubConfig",
    "ScrubResult",
    "Scrubber",
    "known_entities",
]
