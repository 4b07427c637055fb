"""Word lists shipped as data files in ``safeguard/pii/data/`` (one lower-case entry a line).

Sources and licences: ``safeguard/pii/data/README.md``. Lists are read once per process.

>>> "sophie" in word_list("given_names")
True
"""

from __future__ import annotations

import functools
from importlib import resources

from safeguard.errors import ConfigError

__all__ = ["CASED_LISTS", "WORD_LISTS", "cased_list", "word_list", "word_table"]

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


#: Lists of the pattern recognizers, matched as written (case and order kept).
CASED_LISTS: tuple[str, ...] = (
    "street_suffixes",
    "name_stopwords",
    "ner_person_stopwords",
    "us_states",
)


def _lines(name: str) -> list[str]:
    path = resources.files("safeguard.pii").joinpath("data", f"{name}.txt")
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@functools.cache
def cased_list(name: str) -> tuple[str, ...]:
    """The entries of list ``name`` as written, in file order (``#`` lines are comments).

    >>> cased_list("street_suffixes")[:3]
    ('Alley', 'Aly', 'Annex')

    Raises:
        ConfigError: ``name`` is not one of :data:`CASED_LISTS`.
    """
    if name not in CASED_LISTS:
        raise ConfigError(f"unknown word list {name!r}; known: {', '.join(CASED_LISTS)}")
    return tuple(_lines(name))


def word_table(name: str) -> dict[str, str]:
    """A two-column list (``key<tab>value`` a line) as a dict, in file order.

    >>> word_table("us_states")["MA"]
    'Massachusetts'
    """
    return dict(line.split("\t", 1) for line in cased_list(name))  # type: ignore[misc]


@functools.cache
def word_list(name: str) -> frozenset[str]:
    """The entries of list ``name`` (lower case; ``#`` lines are comments).

    Raises:
        ConfigError: ``name`` is not a shipped list.
    """
    if name not in WORD_LISTS:
        raise ConfigError(f"unknown word list {name!r}; known: {', '.join(WORD_LISTS)}")
    return frozenset(line.lower() for line in _lines(name))
