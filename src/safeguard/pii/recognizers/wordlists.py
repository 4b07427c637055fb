"""Word lists shipped as data files in ``safeguard/pii/data/`` (one lower-case entry a line).

Sources and licences: ``safeguard/pii/data/README.md``. Lists are read once per process.

>>> "sophie" in word_list("given_names")
True
"""

from __future__ import annotations

import functools
from importlib import resources

from safeguard.errors import ConfigError

__all__ = ["WORD_LISTS", "word_list"]

#: The lists this package ships, by name (file ``data/<name>.txt``).
WORD_LISTS: tuple[str, ...] = (
    "given_names",
    "surnames",
    "cities",
    "countries",
    "drugs",
    "common_words",
    "stop_words",
    "org_words",
    "facility_words",
    "person_verbs",
    "name_cues",
)


@functools.cache
def word_list(name: str) -> frozenset[str]:
    """The entries of list ``name`` (lower case; ``#`` lines are comments).

    Raises:
        ConfigError: ``name`` is not a shipped list.
    """
    if name not in WORD_LISTS:
        raise ConfigError(f"unknown word list {name!r}; known: {', '.join(WORD_LISTS)}")
    path = resources.files("safeguard.pii").joinpath("data", f"{name}.txt")
    words = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.add(line.lower())
    return frozenset(words)
