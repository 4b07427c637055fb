"""Suite-wide fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_safeguard_home(tmp_path_factory, monkeypatch):
    """Each test gets its own ``SAFEGUARD_HOME`` (the per-dataset privacy-ledger registry).

    Without it, tests that train on the same small data set in different folders would meet
    each other's registry entries (and a developer's own ``~/.safeguard``).
    """
    monkeypatch.setenv("SAFEGUARD_HOME", str(tmp_path_factory.mktemp("safeguard-home")))
