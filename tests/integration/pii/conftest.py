"""One spaCy-backed scrubber for the whole PII integration session (spaCy loads once)."""

from __future__ import annotations

import pytest

from safeguard.pii import Scrubber


@pytest.fixture(scope="session")
def hipaa() -> Scrubber:
    scrubber = Scrubber.from_policy("healthcare-hipaa")
    scrubber.analyze("warm-up")
    return scrubber


@pytest.fixture(scope="session")
def patterns_only() -> Scrubber:
    return Scrubber.from_policy("healthcare-hipaa", use_ner=False)
