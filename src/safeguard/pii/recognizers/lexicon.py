"""Word lists and word patterns of the Safe Harbor pattern recognizers.

The lists are data files in ``safeguard/pii/data/`` (matched as written: case kept); this
module names them and adds the short regex pieces the recognizers share.
"""

from __future__ import annotations

import re

from safeguard.pii.recognizers.wordlists import cased_list, word_table

__all__ = [
    "CITY_STOP",
    "DEFAULT_CONTEXT",
    "MONTH",
    "MONTH_RE",
    "NAME_STOPWORDS",
    "NER_PERSON_STOPWORDS",
    "STREET_SUFFIXES",
    "TITLES",
    "US_STATES",
]

#: USPS state, district, territory and military codes -> names.
US_STATES: dict[str, str] = word_table("us_states")

#: USPS street suffixes (Publication 28, appendix C1) and their common abbreviations.
STREET_SUFFIXES: list[str] = list(cased_list("street_suffixes"))

#: Capitalised words that follow a title or label but are not names.
NAME_STOPWORDS: frozenset[str] = frozenset(cased_list("name_stopwords"))

#: Label and product words that spaCy's small model often tags as PERSON.
NER_PERSON_STOPWORDS: frozenset[str] = frozenset(cased_list("ner_person_stopwords"))

#: Words that open a phrase before a city but are not part of its name.
CITY_STOP = NAME_STOPWORDS | {"Lives", "Resides", "Moved", "Born", "Home", "Seen", "Transferred"}

#: Month names and abbreviations (title and upper case), as a regex group.
MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?"
    r"|JAN(?:UARY)?|FEB(?:RUARY)?|MAR(?:CH)?|APR(?:IL)?|MAY|JUNE?|JULY?|AUG(?:UST)?"
    r"|SEPT?(?:EMBER)?|OCT(?:OBER)?|NOV(?:EMBER)?|DEC(?:EMBER)?)"
)
MONTH_RE = re.compile(r"\b" + MONTH + r"\b")

#: Title words that introduce a person's name.
TITLES = r"(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Pt|Sr|Sra|Rev|Hon|Capt|Sgt)"

#: Default context words per entity type (lower case, matched as whole words).
DEFAULT_CONTEXT: dict[str, tuple[str, ...]] = {
    "PHONE_NUMBER": ("phone", "tel", "telephone", "call", "cell", "mobile", "contact", "pager",
                     "ph", "home", "work", "reached", "number", "callback"),
    "FAX_NUMBER": ("fax", "facsimile"),
    "US_SSN": ("ssn", "social security", "ss#", "social"),
    "CREDIT_CARD": ("card", "credit", "debit", "visa", "mastercard", "amex", "discover",
                    "maestro", "cc", "payment", "paid"),
    "NPI": ("npi", "provider", "national provider"),
    "DEA_NUMBER": ("dea", "registration", "prescriber"),
    "IP_ADDRESS": ("ip", "address", "host", "server", "logged", "login", "portal"),
    "DATE_TIME": ("on", "dated", "date", "dob", "born", "birth", "admitted", "admission",
                  "discharged", "discharge", "seen", "since", "visit", "surgery", "procedure",
                  "expired", "died", "death", "scheduled", "until", "from", "as of"),
    "ZIP_CODE": ("zip", "zipcode", "postal", "zip code"),
    "VEHICLE_ID": ("vin", "vehicle", "plate", "car", "truck"),
    "DEVICE_ID": ("serial", "device", "pacemaker", "pump", "implant", "udi"),
    "HEALTH_PLAN_NUMBER": ("medicare", "medicaid", "member", "beneficiary", "insurance", "plan"),
}  # fmt: skip
