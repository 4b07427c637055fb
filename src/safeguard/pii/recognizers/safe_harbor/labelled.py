"""Numbers that are only identifiers after a label (``MRN:``, ``Member ID``, ``Acct #``, ``S/N``).

The span is the value, not the label. NPI and DEA numbers failing their check digit score lower.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from safeguard.pii.checksums import dea_valid, npi_valid
from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_LABEL_SEP = r"[ \t]*(?:[:#=]|\bis\b|\bwas\b|\bof\b|-)?[ \t]*(?:#[ \t]*)?"
_ID_VALUE = r"(?P<v>[A-Za-z0-9](?:[A-Za-z0-9]|[-/.](?=[A-Za-z0-9])){3,24})(?![A-Za-z0-9])"
_NO = r"(?:number|num|no\.?|nbr|#|id|identifier)"

_LABELLED_IDS: dict[str, str] = {
    "MEDICAL_RECORD_NUMBER": (
        rf"MRN|MR\s?#|MR\s+{_NO}|medical\s+record(?:\s+{_NO})?|med\.?\s+rec(?:ord)?\.?(?:\s+{_NO})?"
        rf"|record\s+{_NO}|chart\s+{_NO}|hospital\s+{_NO}|patient\s+(?:id|identifier|number|no\.?)"
        rf"|unit\s+{_NO}|PID"
    ),
    "HEALTH_PLAN_NUMBER": (
        rf"member\s+{_NO}|member|subscriber\s+{_NO}|policy\s+{_NO}|policy|insurance\s+{_NO}"
        rf"|beneficiary\s+{_NO}|health\s+plan\s+{_NO}|plan\s+{_NO}|group\s+{_NO}"
        rf"|medicaid(?:\s+{_NO})?|medicare(?:\s+{_NO})?|MBI|HICN|insured\s+{_NO}"
    ),
    "ACCOUNT_NUMBER": (
        rf"account(?:\s+{_NO})?|acct\.?(?:\s+{_NO})?|billing\s+{_NO}|encounter\s+{_NO}"
        rf"|accession(?:\s+{_NO})?|acc\.?\s*#|case(?:\s+{_NO})?|specimen\s+{_NO}|requisition(?:\s+{_NO})?"
        rf"|visit\s+{_NO}|invoice\s+{_NO}|claim\s+{_NO}|bank\s+account(?:\s+{_NO})?|FIN|CSN|HAR"
    ),
    "LICENSE_NUMBER": (
        rf"(?:driver'?s?\s+)?licen[cs]e(?:\s+{_NO})?|DL(?:\s*{_NO})?|certificate(?:\s+{_NO})?"
        rf"|cert\.?\s*#|permit(?:\s+{_NO})?|passport(?:\s+{_NO})?|state\s+licen[cs]e"
    ),
    "DEVICE_ID": (
        rf"serial(?:\s+{_NO})?|S/N|SN|device(?:\s+{_NO})|device\s+serial|UDI|implant(?:\s+{_NO})"
        rf"|IMEI|lot(?:\s+{_NO})|model(?:\s+{_NO})|pacemaker\s+{_NO}|pump\s+{_NO}"
    ),
    "VEHICLE_ID": (
        rf"VIN|vehicle\s+identification\s+number|vehicle(?:\s+{_NO})|licen[cs]e\s+plate(?:\s+{_NO})?"
        rf"|plate(?:\s+{_NO})?|tag\s+{_NO}|registration(?:\s+{_NO})?"
    ),
    "NPI": rf"NPI(?:\s*{_NO})?|national\s+provider\s+identifier",
    "DEA_NUMBER": rf"DEA(?:\s*{_NO})?|DEA\s+registration(?:\s+{_NO})?",
    "US_SSN": rf"SSN|SS#|social\s+security(?:\s+{_NO})?",
    "ZIP_CODE": r"zip(?:\s*code)?|postal\s+code",
}

# Value shapes that a label must be followed by, per entity (else the generic ID value).
_LABELLED_VALUES: dict[str, str] = {
    "VEHICLE_ID": r"(?-i:(?P<v>[A-Z0-9]{1,4}[ -]?[A-Z0-9]{1,8}))(?![A-Za-z0-9])",
    "NPI": r"(?P<v>\d{10})(?!\d)",
    "DEA_NUMBER": r"(?P<v>[A-Za-z]{2}\d{7})(?![A-Za-z0-9])",
    "US_SSN": r"(?P<v>\d{3}[- ]?\d{2}[- ]?\d{4})(?!\d)",
    # US ZIP / ZIP+4, other countries' 3-6 digit codes, UK-style postcodes ("PH36 9QH")
    "ZIP_CODE": (
        r"(?P<v>\d{5}-\d{4}|\d{2}-\d{3}|\d{3}[ ]\d{2}|\d{3,6}|(?-i:[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2}))(?![A-Za-z0-9])"
    ),
}


def compile_labels(context_words: Mapping[str, Sequence[str]]) -> list[tuple[str, re.Pattern[str]]]:
    """One ``label + value`` regex per entity; ``context_words`` add labels."""
    labelled: list[tuple[str, re.Pattern[str]]] = []
    for entity, label in _LABELLED_IDS.items():
        extra = [w for w in context_words.get(entity, ()) if w.strip()]
        alts = label + "".join("|" + re.escape(w.strip()).replace(r"\ ", r"\s+") for w in extra)
        value = _LABELLED_VALUES.get(entity, _ID_VALUE)
        labelled.append(
            (
                entity,
                re.compile(
                    r"(?<![A-Za-z0-9])(?:" + alts + r")(?![A-Za-z0-9])" + _LABEL_SEP + value,
                    re.IGNORECASE,
                ),
            )
        )
    return labelled


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    for entity, rx in scope.labelled:
        if entity not in scope.entities:
            continue
        for m in rx.finditer(text):
            s, e = m.span("v")
            value = m.group("v")
            if sum(c.isdigit() for c in value) < 2:
                continue
            score = 0.85
            if (entity == "NPI" and not npi_valid(value)) or (
                entity == "DEA_NUMBER" and not dea_valid(value)
            ):
                score = 0.5
            yield Candidate(s, e, entity, score, "pattern", f"labelled:{entity}")
