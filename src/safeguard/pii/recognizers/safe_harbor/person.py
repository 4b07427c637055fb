"""PERSON: names after a title (``Dr.``), after a label or relation (``Patient:``,
``daughter``), and before a credential (``, MD``); stop words are trimmed from both ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from safeguard.pii.recognizers.lexicon import NAME_STOPWORDS
from safeguard.pii.recognizers.lexicon import TITLES as _TITLES
from safeguard.pii.recognizers.rules import Scope, trim
from safeguard.pii.types import Candidate

_TITLE_NAME = re.compile(
    rf"\b{_TITLES}\.?[ \t]+(?P<v>[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’-]+(?:[ \t]+[A-Z]\.)?(?:[ \t]+[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’-]+){{0,2}})"
)
_NAME_LABEL = re.compile(
    r"\b(?:[Pp]atient(?:\s+name)?|[Nn]ame|[Ss]een\s+by|[Aa]ttending|[Rr]esident|[Nn]urse|NP|PA|RN"
    r"|[Pp]hysician|[Ss]urgeon|[Pp]rovider|PCP|[Rr]eferred\s+by|[Ss]on|[Dd]aughter|[Ww]ife"
    r"|[Hh]usband|[Mm]other|[Ff]ather|[Bb]rother|[Ss]ister|[Ss]pouse|[Pp]artner|[Gg]uardian"
    r"|[Gg]rand(?:daughter|son|mother|father)|[Nn]iece|[Nn]ephew|[Aa]unt|[Uu]ncle|[Cc]ousin"
    r"|[Ff]ianc[ée]e?|[Gg]irlfriend|[Bb]oyfriend|[Ss]tep(?:son|daughter|mother|father)"
    r"|[Cc]aregiver|[Cc]ontact|[Ss]igned\s+by|[Dd]ictated\s+by|[Cc]osigned\s+by|[Ff]riend"
    r"|[Nn]eighbor|[Ee]mployer|POA|[Pp]roxy|[Ii]nterpreter)"
    r"[ \t]*[:,-]?[ \t]+"
    r"(?P<v>[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’-]+(?:,[ \t]*[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’-]+)?(?:[ \t]+[A-Z]\.)?(?:[ \t]+[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’-]+){0,2})"
)
_NAME_CREDENTIAL = re.compile(
    r"(?P<v>\b[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’-]+(?:[ \t]+[A-Z]\.)?[ \t]+[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’-]+),?[ \t]+"
    r"(?:MD|M\.D\.|DO|D\.O\.|RN|NP|PA-C|PhD|DDS|PharmD|MSN|FNP|APRN|CNM|LCSW)\b"
)


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for rx, score, name in (
        (_TITLE_NAME, 0.8, "title-name"),
        (_NAME_LABEL, 0.7, "labelled-name"),
        (_NAME_CREDENTIAL, 0.8, "credential-name"),
    ):
        for m in rx.finditer(text):
            span = strip_name(text, *m.span("v"))
            if span is not None:
                yield Candidate(span[0], span[1], "PERSON", score, "pattern", name)


def strip_name(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Drop stop words at both ends of a name candidate; None if nothing is left."""
    words = list(re.finditer(r"[^\s,]+", text[start:end]))
    while words and words[0].group().rstrip(".") in NAME_STOPWORDS:
        words.pop(0)
    while words and words[-1].group().rstrip(".") in NAME_STOPWORDS:
        words.pop()
    if not words:
        return None
    s, e = start + words[0].start(), start + words[-1].end()
    if text[s:e].endswith(("'s", "’s")):
        e -= 2
    return trim(text, s, e) if e > s else None
