"""Recall-first recognizers: word lists and formats the Safe Harbor patterns lack.

Each recognizer is a pure function ``text -> Iterable[Candidate]`` registered by name in an
explicit registry; a policy's recall-first pipeline runs :data:`RECALL_FIRST` in order.
Word lists are data files in ``safeguard/pii/data/`` (see its README for sources).

>>> sorted(RECOGNIZERS)[:3]
['ages_after_names', 'cities', 'country_postcodes']
>>> get_recognizer("nope")
Traceback (most recent call last):
...
safeguard.errors.ConfigError: unknown recognizer 'nope'; known: ages_after_names, cities, country_postcodes, datetime, facilities, given_names, intl_phone, named_streets, names_after_cues, names_before_verbs, obfuscated_email, places_after_cue, postcode, streets, surname_pairs
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from safeguard.errors import ConfigError as _ConfigError
from safeguard.pii.recognizers.formats import (
    datetime_candidates,
    intl_phone_candidates,
    obfuscated_email_candidates,
    postcode_candidates,
)
from safeguard.pii.recognizers.names import (
    age_after_name_candidates,
    given_name_candidates,
    name_after_cue_candidates,
    name_before_verb_candidates,
    surname_pair_candidates,
)
from safeguard.pii.recognizers.places import (
    city_candidates,
    country_postcode_candidates,
    facility_candidates,
    named_street_candidates,
    place_after_cue_candidates,
    street_candidates,
)
from safeguard.pii.types import Candidate

__all__ = [
    "RECALL_FIRST",
    "RECOGNIZERS",
    "Candidate",
    "Recognizer",
    "age_after_name_candidates",
    "city_candidates",
    "country_postcode_candidates",
    "datetime_candidates",
    "facility_candidates",
    "get_recognizer",
    "given_name_candidates",
    "intl_phone_candidates",
    "name_after_cue_candidates",
    "name_before_verb_candidates",
    "named_street_candidates",
    "obfuscated_email_candidates",
    "place_after_cue_candidates",
    "postcode_candidates",
    "register_recognizer",
    "run_recognizers",
    "street_candidates",
    "surname_pair_candidates",
]

Recognizer = Callable[[str], Iterable[Candidate]]

RECOGNIZERS: dict[str, Recognizer] = {}


def register_recognizer(name: str, fn: Recognizer, *, force: bool = False) -> None:
    """Register ``fn`` under ``name``; re-registering a name needs ``force=True``."""
    if name in RECOGNIZERS and not force:
        raise _ConfigError(
            f"recognizer {name!r} is already registered; pass force=True to replace it"
        )
    RECOGNIZERS[name] = fn


def get_recognizer(name: str) -> Recognizer:
    """The recognizer registered as ``name``.

    Raises:
        ConfigError: No recognizer has that name (the message lists the known ones).
    """
    try:
        return RECOGNIZERS[name]
    except KeyError:
        raise _ConfigError(
            f"unknown recognizer {name!r}; known: {', '.join(sorted(RECOGNIZERS))}"
        ) from None


def run_recognizers(names: Sequence[str], text: str, entities: Iterable[str]) -> list[Candidate]:
    """Candidates of the named recognizers in ``text``, restricted to ``entities``."""
    wanted = set(entities)
    return [c for name in names for c in get_recognizer(name)(text) if c.entity in wanted]


register_recognizer("datetime", datetime_candidates)
register_recognizer("intl_phone", intl_phone_candidates)
register_recognizer("postcode", postcode_candidates)
register_recognizer("obfuscated_email", obfuscated_email_candidates)
register_recognizer("given_names", given_name_candidates)
register_recognizer("surname_pairs", surname_pair_candidates)
register_recognizer("names_before_verbs", name_before_verb_candidates)
register_recognizer("names_after_cues", name_after_cue_candidates)
register_recognizer("ages_after_names", age_after_name_candidates)
register_recognizer("cities", city_candidates)
register_recognizer("facilities", facility_candidates)
register_recognizer("streets", street_candidates)
register_recognizer("places_after_cue", place_after_cue_candidates)
register_recognizer("named_streets", named_street_candidates)
register_recognizer("country_postcodes", country_postcode_candidates)

#: What a recall-first policy runs, in order.
RECALL_FIRST: tuple[str, ...] = (
    "datetime", "intl_phone", "postcode", "obfuscated_email",
    "given_names", "surname_pairs", "names_before_verbs", "names_after_cues", "ages_after_names",
    "cities", "facilities", "streets", "places_after_cue", "named_streets", "country_postcodes",
)  # fmt: skip
