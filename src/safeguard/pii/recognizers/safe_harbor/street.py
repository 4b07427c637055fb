"""STREET_ADDRESS: house number + street + USPS suffix (+ unit), P.O. boxes, unit numbers on
their own, and street-name-first shapes (``Via Leopardi 83``, ``Favoritenstrasse 36``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.lexicon import STREET_SUFFIXES as _STREET_SUFFIXES
from safeguard.pii.recognizers.rules import Scope, trim
from safeguard.pii.types import Candidate

_SUFFIX_ALT = "|".join(sorted(set(_STREET_SUFFIXES), key=len, reverse=True))
_STREET = re.compile(
    r"(?<![\w-])(?P<v>\d{1,6}[A-Za-z]?[ \t]+(?:(?:[NSEW]|North|South|East|West)\.?[ \t]+)?"
    r"(?:(?:[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’-]*|\d{1,3}(?:st|nd|rd|th))\.?[ \t]+){1,4}"
    rf"(?:{_SUFFIX_ALT})\b\.?"
    r"(?:[ \t]+(?:NE|NW|SE|SW|N|S|E|W)\b\.?)?"
    r"(?:,?[ \t]+(?:Apt|Apartment|Suite|Ste|Unit|Room|Rm|Bldg|Building|Fl|Floor|Lot|#)\.?[ \t]*#?[ \t]*[A-Za-z0-9-]+)?)"
)
_PO_BOX = re.compile(r"\b(?P<v>P\.?\s?O\.?\s+Box\s+\d{1,6})\b", re.IGNORECASE)
# "Apt. 4B", "Suite 026" on their own (e.g. on the line after the street); not "Unit",
# "Room" or "Floor", which in notes are insulin units and hospital rooms
_SECONDARY = re.compile(
    r"(?<![\w-])(?P<v>(?:Apt|Apartment|Suite|Ste)\.?[ \t]*#?[ \t]*"
    r"(?=[A-Za-z0-9-]*\d)[A-Za-z0-9][A-Za-z0-9-]{0,6})(?![\w-])"
)
# Street name first, house number after: "Via Leopardi 83", "Rua Arapiraca 1943",
# "Favoritenstrasse 36", "Lamphey Road 2"
_LETTER = "a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’"
_STREET_NUMBER_AFTER = re.compile(
    rf"(?<![\w-])(?P<v>(?:(?:Via|Viale|Rua|Rue|Calle|Avenida|Av\.|Avenue|Piazza|Plaza|Praça|Carrer|Camino|Strada|Ulica|ul\.)"
    rf"[ \t]+(?:[A-ZÀ-ÖØ-Þ][{_LETTER}.-]*[ \t]+){{0,3}}[A-ZÀ-ÖØ-Þ][{_LETTER}.-]*"
    rf"|[A-ZÀ-ÖØ-Þ][{_LETTER}-]*(?:strasse|straße|str\.|weg|gasse|platz|allee|laan|straat|vej|gatan|gata|katu|utca)"
    rf")[ \t]+\d{{1,5}}[A-Za-z]?)(?![\w-])"
)


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for rx in (_STREET, _PO_BOX, _SECONDARY, _STREET_NUMBER_AFTER):
        for m in rx.finditer(text):
            s, e = trim(text, *m.span("v"))
            yield Candidate(s, e, "STREET_ADDRESS", 0.8, "pattern", "street")
