from __future__ import annotations

import pytest

from safeguard.provenance import PrivateKey


@pytest.fixture(scope="session")
def key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(scope="session")
def other_key() -> PrivateKey:
    return PrivateKey.generate()
