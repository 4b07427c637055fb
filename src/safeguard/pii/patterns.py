"""Pattern recognizers for the HIPAA Safe Harbor identifiers (pure Python, regex + checksums).

Each detector scans a text and yields :class:`Candidate` spans with a score in [0, 1].
Identifiers that have a format (card numbers, NPI, DEA, VIN, SSN, phone, e-mail, IP, dates,
street addresses) are matched by shape and validated where a check digit exists; identifiers
that are just "some number" (medical record, health-plan, account, licence, device numbers)
are matched only after a label (``MRN:``, ``Member ID``, ``Acct #``, ``S/N``), and the span is
the value, not the label.

Context words raise a score only on a *whole-word* match in a window before the candidate
(``"lic"`` never matches inside ``"public"``), unlike Presidio's default substring matching.

This module imports nothing outside the standard library; the Presidio adapter
(:mod:`safeguard.pii._presidio`) wraps it in one ``EntityRecognizer``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from safeguard.pii.checksums import dea_valid, luhn_valid, npi_valid, vin_valid

__all__ = [
    "DEFAULT_CONTEXT",
    "PATTERN_ENTITIES",
    "US_STATES",
    "Candidate",
    "PatternDetector",
    "whole_word_regex",
]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A span proposed by one recognizer, before thresholds and overlap resolution.

    Attributes:
        start: Offset of the first character.
        end: Offset one past the last character.
        entity: Entity type, e.g. ``PHONE_NUMBER``.
        score: Confidence in [0, 1].
        source: ``pattern``, ``ner`` or ``deny`` (deny-list terms); used to rank overlaps.
        recognizer: Name of the rule that proposed it (for explanations and tests).
    """

    start: int
    end: int
    entity: str
    score: float
    source: str = "pattern"
    recognizer: str = ""


# --------------------------------------------------------------------------- word lists

US_STATES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa",
    "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
    "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi",
    "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire",
    "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York", "NC": "North Carolina",
    "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania",
    "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota", "TN": "Tennessee",
    "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia", "WA": "Washington",
    "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming", "DC": "District of Columbia",
    "PR": "Puerto Rico", "VI": "Virgin Islands", "GU": "Guam", "AS": "American Samoa",
    "MP": "Northern Mariana Islands", "FM": "Micronesia", "MH": "Marshall Islands", "PW": "Palau",
    "AA": "Armed Forces Americas", "AE": "Armed Forces Europe", "AP": "Armed Forces Pacific",
}  # fmt: skip

# USPS street suffixes (Publication 28, appendix C1) and their common abbreviations.
_STREET_SUFFIXES = [
    "Alley",
    "Aly",
    "Annex",
    "Anx",
    "Arcade",
    "Arc",
    "Avenue",
    "Ave",
    "Av",
    "Bayou",
    "Beach",
    "Bch",
    "Bend",
    "Bluff",
    "Bluffs",
    "Bottom",
    "Boulevard",
    "Blvd",
    "Branch",
    "Br",
    "Bridge",
    "Brg",
    "Brook",
    "Brooks",
    "Burg",
    "Burgs",
    "Bypass",
    "Byp",
    "Camp",
    "Canyon",
    "Cape",
    "Causeway",
    "Cswy",
    "Center",
    "Ctr",
    "Centers",
    "Circle",
    "Cir",
    "Circles",
    "Cliff",
    "Cliffs",
    "Club",
    "Common",
    "Commons",
    "Corner",
    "Corners",
    "Course",
    "Court",
    "Ct",
    "Courts",
    "Cove",
    "Coves",
    "Creek",
    "Crk",
    "Crescent",
    "Cres",
    "Crest",
    "Crossing",
    "Xing",
    "Crossroad",
    "Crossroads",
    "Curve",
    "Dale",
    "Dam",
    "Divide",
    "Drive",
    "Dr",
    "Drives",
    "Estate",
    "Estates",
    "Expressway",
    "Expy",
    "Extension",
    "Ext",
    "Extensions",
    "Fall",
    "Falls",
    "Ferry",
    "Field",
    "Fields",
    "Flat",
    "Flats",
    "Ford",
    "Fords",
    "Forest",
    "Forge",
    "Forges",
    "Fork",
    "Forks",
    "Fort",
    "Freeway",
    "Fwy",
    "Garden",
    "Gardens",
    "Gdns",
    "Gateway",
    "Glen",
    "Glens",
    "Green",
    "Greens",
    "Grove",
    "Groves",
    "Harbor",
    "Harbors",
    "Haven",
    "Heights",
    "Hts",
    "Highway",
    "Hwy",
    "Hill",
    "Hills",
    "Hollow",
    "Inlet",
    "Island",
    "Islands",
    "Isle",
    "Junction",
    "Junctions",
    "Key",
    "Keys",
    "Knoll",
    "Knolls",
    "Lake",
    "Lakes",
    "Land",
    "Landing",
    "Lane",
    "Ln",
    "Light",
    "Lights",
    "Loaf",
    "Lock",
    "Locks",
    "Lodge",
    "Loop",
    "Mall",
    "Manor",
    "Manors",
    "Meadow",
    "Meadows",
    "Mews",
    "Mill",
    "Mills",
    "Mission",
    "Motorway",
    "Mount",
    "Mountain",
    "Mountains",
    "Neck",
    "Orchard",
    "Oval",
    "Overpass",
    "Park",
    "Parks",
    "Parkway",
    "Pkwy",
    "Parkways",
    "Pass",
    "Passage",
    "Path",
    "Pike",
    "Pine",
    "Pines",
    "Place",
    "Pl",
    "Plain",
    "Plains",
    "Plaza",
    "Plz",
    "Point",
    "Pt",
    "Points",
    "Port",
    "Ports",
    "Prairie",
    "Radial",
    "Ramp",
    "Ranch",
    "Rapid",
    "Rapids",
    "Rest",
    "Ridge",
    "Ridges",
    "River",
    "Road",
    "Rd",
    "Roads",
    "Route",
    "Rte",
    "Row",
    "Rue",
    "Run",
    "Shoal",
    "Shoals",
    "Shore",
    "Shores",
    "Skyway",
    "Spring",
    "Springs",
    "Spur",
    "Spurs",
    "Square",
    "Sq",
    "Squares",
    "Station",
    "Sta",
    "Stravenue",
    "Stream",
    "Street",
    "St",
    "Streets",
    "Summit",
    "Terrace",
    "Ter",
    "Throughway",
    "Trace",
    "Track",
    "Trafficway",
    "Trail",
    "Trl",
    "Tunnel",
    "Turnpike",
    "Tpke",
    "Underpass",
    "Union",
    "Unions",
    "Valley",
    "Valleys",
    "Via",
    "Viaduct",
    "View",
    "Views",
    "Village",
    "Villages",
    "Ville",
    "Vista",
    "Walk",
    "Walks",
    "Wall",
    "Way",
    "Ways",
    "Well",
    "Wells",
]

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?"
    r"|JAN(?:UARY)?|FEB(?:RUARY)?|MAR(?:CH)?|APR(?:IL)?|MAY|JUNE?|JULY?|AUG(?:UST)?"
    r"|SEPT?(?:EMBER)?|OCT(?:OBER)?|NOV(?:EMBER)?|DEC(?:EMBER)?)"
)
_MONTH_RE = re.compile(r"\b" + _MONTH + r"\b")

#: Title words that introduce a person's name.
_TITLES = r"(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Pt|Sr|Sra|Rev|Hon|Capt|Sgt)"

#: Capitalised words that follow a title or label but are not names.
NAME_STOPWORDS = frozenset(
    [
        "The",
        "A",
        "An",
        "And",
        "Or",
        "Of",
        "In",
        "On",
        "At",
        "To",
        "For",
        "With",
        "By",
        "From",
        "Patient",
        "Pt",
        "Denies",
        "Reports",
        "Presents",
        "Presented",
        "States",
        "Stated",
        "Was",
        "Is",
        "Has",
        "Had",
        "Will",
        "Be",
        "Been",
        "Being",
        "Not",
        "No",
        "Yes",
        "Today",
        "Yesterday",
        "Tomorrow",
        "This",
        "That",
        "These",
        "Those",
        "He",
        "She",
        "They",
        "His",
        "Her",
        "Their",
        "Admitted",
        "Discharged",
        "History",
        "Hx",
        "Plan",
        "Assessment",
        "Exam",
        "Follow",
        "Followup",
        "Continue",
        "Start",
        "Stop",
        "Please",
        "Per",
        "Note",
        "Notes",
        "Seen",
        "See",
        "Called",
        "Call",
        "Spoke",
        "Discussed",
        "Informed",
        "Reviewed",
        "Pain",
        "Blood",
        "Pressure",
        "Heart",
        "Rate",
        "Temp",
        "Weight",
        "Height",
        "Allergies",
        "Medications",
        "Meds",
        "Dx",
        "Rx",
        "Tx",
        "Signed",
        "Dictated",
        "Attending",
        "Resident",
        "Nurse",
        "Team",
        "Service",
        "Unit",
        "Room",
        "Floor",
        "Department",
        "Dept",
        "Emergency",
        "Hospital",
        "Clinic",
        "Center",
        "Medical",
        "Family",
        "Social",
        "Past",
        "Surgical",
        "Review",
        "Systems",
        "General",
        "Chief",
        "Complaint",
        "Date",
        "Time",
        "Name",
        "Address",
        "Phone",
        "Email",
        "Fax",
        "Age",
        "Sex",
        "Male",
        "Female",
        "DOB",
        "MRN",
        "Id",
        "ID",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
        "Mother",
        "Father",
        "Wife",
        "Husband",
        "Son",
        "Daughter",
        "Sister",
        "Brother",
        "Niece",
        "Nephew",
        "Granddaughter",
        "Grandson",
        "Dr",
        "Mr",
        "Mrs",
        "Ms",
        "Mx",
        "Miss",
        "Prof",
        "Pt",
        "Sr",
        "Sra",
        "Rev",
        "Hon",
        "Capt",
        "Sgt",
    ]
)

#: Label and product words that spaCy's small model often tags as PERSON.
NER_PERSON_STOPWORDS = frozenset(
    [
        "Email",
        "E-mail",
        "Dr",
        "Driver",
        "Drivers",
        "VIN",
        "Maestro",
        "Visa",
        "Mastercard",
        "Amex",
        "Discover",
        "Fax",
        "Phone",
        "Tel",
        "Cell",
        "SSN",
        "NPI",
        "DEA",
        "MRN",
        "Card",
        "Insurance",
        "Member",
        "Medicare",
        "Medicaid",
        "Account",
        "Billing",
        "Pacemaker",
        "License",
        "Licence",
        "Plate",
        "Serial",
        "Address",
        "Call",
        "Contact",
        "Referred",
        "Transferred",
        "Follow",
        "Follow-up",
        "Copay",
        "Paid",
        "Prescriber",
        "Portal",
        "Login",
        "Device",
        "Insulin",
        "Pump",
        "Hemoglobin",
        "Vehicle",
        "Policy",
        "Group",
        "Wife",
        "Son",
        "Daughter",
        "Husband",
        "Caregiver",
        "Neighbor",
        "Signed",
        "Reach",
        "Please",
        "Mail",
        "Card",
        "Last",
        "Next",
        "Discharge",
    ]
)

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


def whole_word_regex(words: Iterable[str]) -> re.Pattern[str] | None:
    """A case-insensitive regex matching any of ``words`` as whole words (None if empty).

    >>> bool(whole_word_regex(["lic"]).search("public"))
    False
    >>> bool(whole_word_regex(["lic"]).search("lic #A123"))
    True
    """
    alts = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    if not alts:
        return None
    body = "|".join(re.escape(a).replace(r"\ ", r"\s+") for a in alts)
    return re.compile(r"(?<![A-Za-z0-9])(?:" + body + r")(?![A-Za-z0-9])", re.IGNORECASE)


# --------------------------------------------------------------------------- regexes

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

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])")
_URL = re.compile(
    r"(?:(?:https?|ftp)://[^\s<>\"'`]+"
    r"|(?<![\w@.-])www\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+[^\s<>\"'`]*"
    r"|(?<![\w@.-])(?:[A-Za-z0-9-]+\.)+(?:com|org|net|edu|gov|mil|io|info|biz|us|co|health|care|med|app)(?:\.[a-z]{2})?"
    r"(?:/[^\s<>\"'`]*)?(?![\w@-]))",
    re.IGNORECASE,
)
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?:/\d{1,2})?(?![\d.]\d)"
)
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Fa-f:])")
_MAC = re.compile(
    r"(?<![0-9A-Fa-f:-])[0-9A-Fa-f]{2}(?:([:-])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}(?![0-9A-Fa-f])"
)
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?P<p>(?P<cc>\+1[\s.-]?|\+1(?=\()|001[\s.-]|1[\s.-])?"
    r"(?:\(\d{3}\)[\s.-]?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
    r"|(?P<bare>(?<![\d-])[2-9]\d{9}))"
    r"(?P<ext>[ \t]*(?:x|ext\.?|extension|#)[ \t]*\d{1,6})?(?![\w-]*\d)"
)
_PHONE_INTL = re.compile(r"(?<![\w+])\+(?!1[\s.(-])\d{1,3}(?:[\s.-]\(?\d{1,5}\)?){2,5}(?!\d)")
_CARD = re.compile(r"(?<![\d-])[2-6]\d{3}(?:[ -]?\d){8,15}(?![\d-])")
_MAESTRO = ("50", "56", "57", "58", "6")
_NPI = re.compile(r"(?<![\d-])[12]\d{9}(?![\d-])")
_DEA = re.compile(r"(?<![A-Za-z0-9])[ABCDEFGHJKLMPRSTUX][A-Z9]\d{7}(?![A-Za-z0-9])")
_VIN = re.compile(
    r"(?<![A-Za-z0-9])(?=[A-HJ-NPR-Z0-9]*\d)(?=[A-HJ-NPR-Z0-9]*[A-Z])[A-HJ-NPR-Z0-9]{17}(?![A-Za-z0-9])"
)
_MBI = re.compile(
    r"(?<![A-Za-z0-9])[1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-?[AC-HJKMNP-RT-Y]"
    r"[AC-HJKMNP-RT-Y0-9]\d-?[AC-HJKMNP-RT-Y]{2}\d{2}(?![A-Za-z0-9])"
)
_DATE_NUMERIC = re.compile(
    r"(?<![\d/.-])(?:"
    r"(?:0?[1-9]|1[0-2])(?P<s1>[/.-])(?:0?[1-9]|[12]\d|3[01])(?P=s1)(?:19|20)?\d{2}"
    r"|(?:0?[1-9]|[12]\d|3[01])(?P<s2>[/.-])(?:0?[1-9]|1[0-2])(?P=s2)(?:19|20)\d{2}"
    r"|(?:19|20)\d{2}(?P<s3>[/.-])(?:0?[1-9]|1[0-2])(?P=s3)(?:0?[1-9]|[12]\d|3[01])"
    r")(?![\d/.-]?\d)"
)
_DATE_SHORT = re.compile(r"(?<![\d/.-])(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])(?![\d/])")
_ORD = r"(?:st|nd|rd|th)?"
_DATE_WORDS = re.compile(
    r"\b(?:"
    rf"{_MONTH}\.?\s+(?:0?[1-9]|[12]\d|3[01]){_ORD}\b(?:,?\s+(?:19|20)\d{{2}}\b)?"
    rf"|(?:0?[1-9]|[12]\d|3[01]){_ORD}\s+(?:of\s+)?{_MONTH}\b\.?(?:,?\s+(?:19|20)\d{{2}}\b)?"
    rf"|{_MONTH}\.?,?\s+(?:of\s+)?(?:19|20)\d{{2}}\b"
    r")"
)
_AGE = re.compile(
    r"(?<![\d.])(?P<v>9\d|1[01]\d)(?![\d.])"
    r"(?P<tail>[\s-]*(?:years?|yrs?|y)[\s-]*(?:old|o\b)|\s?(?:yo|y/o|y\.o\.|YO|yr)\b"
    r"|(?P<sex>[MF])\b)?"
)
# "Tmax 101F" is a temperature, not a 101-year-old woman.
_TEMPERATURE = re.compile(
    r"(?i)\b(?:t|temp|temperature|tmax|tm|fever|febrile|afebrile)\b[^A-Za-z]*$"
)
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
_STATE_ALT = "|".join(sorted([*US_STATES, *(n for n in US_STATES.values())], key=len, reverse=True))
_CITY_STATE = re.compile(
    r"(?P<city>(?<![\w-])[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž.'’-]+(?:[ \t]+[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž.'’-]+){0,3}),[ \t]+"
    rf"(?P<state>{_STATE_ALT})\b(?:,?[ \t]+(?P<zip>\d{{5}}(?:-\d{{4}})?)(?!\d))?"
)
_FACILITY = re.compile(
    r"(?P<v>(?:(?:St\.?|Saint|Mount|Mt\.?)[ \t]+)?(?:[A-ZÀ-ÖØ-Þ][a-zA-ZÀ-ÖØ-öø-ÿĀ-ž'’-]+[ \t]+){1,3}"
    r"(?:Hospital|Medical[ \t]+Center|Health[ \t]+Center|Clinic|Infirmary|Hospice"
    r"|Nursing[ \t]+Home|Rehabilitation[ \t]+Center|Urgent[ \t]+Care|Health[ \t]+System))\b"
)
_CREDENTIAL_STATES = frozenset({"MD", "PA", "DO", "NP", "RN"})
_CITY_STOP = NAME_STOPWORDS | {"Lives", "Resides", "Moved", "Born", "Home", "Seen", "Transferred"}

# Entities the pattern detectors can produce.
PATTERN_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS", "URL", "IP_ADDRESS", "US_SSN", "PHONE_NUMBER", "FAX_NUMBER", "CREDIT_CARD",
    "NPI", "DEA_NUMBER", "VEHICLE_ID", "DEVICE_ID", "HEALTH_PLAN_NUMBER", "ACCOUNT_NUMBER",
    "LICENSE_NUMBER", "MEDICAL_RECORD_NUMBER", "DATE_TIME", "AGE_OVER_89", "PERSON",
    "STREET_ADDRESS", "LOCATION", "ZIP_CODE",
)  # fmt: skip


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while end > start and text[end - 1] in " \t\n.,;:!?)]}'\"":
        end -= 1
    while start < end and text[start] in " \t\n([{'\"":
        start += 1
    return start, end


def _strip_name(text: str, start: int, end: int) -> tuple[int, int] | None:
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
    return _trim(text, s, e) if e > s else None


@dataclass(frozen=True, kw_only=True)
class PatternDetector:
    """All pattern recognizers, configured once and applied to many texts.

    Args:
        entities: Entity types to report (others are not searched for).
        context_words: Extra context words per entity, added to :data:`DEFAULT_CONTEXT`.
        deny_list: Terms always reported as the given entity (whole word, case-insensitive).
        context_window: Characters before a candidate searched for context words.
    """

    entities: frozenset[str] = frozenset(PATTERN_ENTITIES)
    context_words: Mapping[str, Sequence[str]] = field(default_factory=dict)
    deny_list: Mapping[str, Sequence[str]] = field(default_factory=dict)
    context_window: int = 40

    def __post_init__(self) -> None:
        if self.context_window < 0:
            raise ValueError(f"`context_window` (={self.context_window}) must be >= 0")
        ctx: dict[str, re.Pattern[str] | None] = {}
        for entity in set(DEFAULT_CONTEXT) | set(self.context_words):
            words = [*DEFAULT_CONTEXT.get(entity, ()), *self.context_words.get(entity, ())]
            ctx[entity] = whole_word_regex(words)
        object.__setattr__(self, "_ctx", ctx)
        labelled: list[tuple[str, re.Pattern[str]]] = []
        for entity, label in _LABELLED_IDS.items():
            extra = [w for w in self.context_words.get(entity, ()) if w.strip()]
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
        object.__setattr__(self, "_labelled", labelled)
        deny = []
        for entity, terms in self.deny_list.items():
            rx = whole_word_regex(terms)
            if rx is not None:
                deny.append((entity, rx))
        object.__setattr__(self, "_deny", deny)
        detectors: list[Callable[[str], Iterator[Candidate]]] = [
            self._labelled_ids,
            self._emails,
            self._urls,
            self._ips,
            self._macs,
            self._ssns,
            self._phones,
            self._cards,
            self._npis,
            self._deas,
            self._vins,
            self._mbis,
            self._dates,
            self._ages,
            self._names,
            self._addresses,
            self._facilities,
            self._deny_terms,
        ]
        object.__setattr__(self, "_detectors", detectors)

    # ------------------------------------------------------------------ helpers
    def _context(self, text: str, start: int, entity: str, *, after: int = 0) -> bool:
        rx = self._ctx.get(entity)  # type: ignore[attr-defined]
        if rx is None:
            return False
        lo = max(0, start - self.context_window)
        if rx.search(text, lo, start):
            return True
        return bool(after) and bool(rx.search(text, start, min(len(text), start + after)))

    def _want(self, *entities: str) -> bool:
        return any(e in self.entities for e in entities)

    def detect(self, text: str) -> list[Candidate]:
        """Every candidate span in ``text`` (unresolved: spans may overlap)."""
        out: list[Candidate] = []
        for det in self._detectors:  # type: ignore[attr-defined]
            out.extend(c for c in det(text) if c.entity in self.entities)
        return out

    # ------------------------------------------------------------------ detectors
    def _labelled_ids(self, text: str) -> Iterator[Candidate]:
        for entity, rx in self._labelled:  # type: ignore[attr-defined]
            if entity not in self.entities:
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

    def _emails(self, text: str) -> Iterator[Candidate]:
        if "@" not in text or not self._want("EMAIL_ADDRESS"):
            return
        for m in _EMAIL.finditer(text):
            yield Candidate(m.start(), m.end(), "EMAIL_ADDRESS", 0.9, "pattern", "email")

    def _urls(self, text: str) -> Iterator[Candidate]:
        if "." not in text or not self._want("URL"):
            return
        for m in _URL.finditer(text):
            s, e = _trim(text, m.start(), m.end())
            if e - s >= 4:
                yield Candidate(s, e, "URL", 0.7, "pattern", "url")

    def _ips(self, text: str) -> Iterator[Candidate]:
        if not self._want("IP_ADDRESS"):
            return
        if "." in text:
            for m in _IPV4.finditer(text):
                score = 0.9 if self._context(text, m.start(), "IP_ADDRESS") else 0.6
                yield Candidate(m.start(), m.end(), "IP_ADDRESS", score, "pattern", "ipv4")
        if "::" in text or text.count(":") >= 3:
            for m in _IPV6.finditer(text):
                try:
                    ipaddress.IPv6Address(m.group())
                except ValueError:
                    continue
                yield Candidate(m.start(), m.end(), "IP_ADDRESS", 0.8, "pattern", "ipv6")

    def _macs(self, text: str) -> Iterator[Candidate]:
        if not self._want("DEVICE_ID"):
            return
        for m in _MAC.finditer(text):
            yield Candidate(m.start(), m.end(), "DEVICE_ID", 0.7, "pattern", "mac")

    def _ssns(self, text: str) -> Iterator[Candidate]:
        if not self._want("US_SSN"):
            return
        for m in _SSN.finditer(text):
            ctx = self._context(text, m.start(), "US_SSN")
            base = 0.6 if m.group(1) == "-" else 0.3
            yield Candidate(m.start(), m.end(), "US_SSN", 0.95 if ctx else base, "pattern", "ssn")

    def _phones(self, text: str) -> Iterator[Candidate]:
        if not self._want("PHONE_NUMBER", "FAX_NUMBER"):
            return
        for m in _PHONE.finditer(text):
            s, e = m.start(), m.end()
            fax = self._context(text, s, "FAX_NUMBER") and not self._nearer_phone_label(text, s)
            ctx = fax or self._context(text, s, "PHONE_NUMBER")
            if m.group("bare"):
                score = 0.6 if ctx else 0.3
            else:
                score = 0.75 if (m.group("cc") or m.group("ext")) else 0.6
                score = min(1.0, score + (0.25 if ctx else 0.0))
            yield Candidate(
                s, e, "FAX_NUMBER" if fax else "PHONE_NUMBER", score, "pattern", "phone"
            )
        if "+" in text:
            for m in _PHONE_INTL.finditer(text):
                fax = self._context(text, m.start(), "FAX_NUMBER")
                yield Candidate(
                    m.start(), m.end(), "FAX_NUMBER" if fax else "PHONE_NUMBER", 0.6,
                    "pattern", "phone-intl",
                )  # fmt: skip

    def _nearer_phone_label(self, text: str, start: int) -> bool:
        """Whether a phone word sits between the last 'fax' word and the number."""
        window = text[max(0, start - self.context_window) : start].lower()
        fax_at = max(window.rfind("fax"), window.rfind("facsimile"))
        tail = window[fax_at + 3 :]
        return bool(re.search(r"\b(?:phone|tel|telephone|cell|mobile|call)\b", tail))

    def _cards(self, text: str) -> Iterator[Candidate]:
        if not self._want("CREDIT_CARD"):
            return
        for m in _CARD.finditer(text):
            digits = re.sub(r"[ -]", "", m.group())
            if not 12 <= len(digits) <= 19 or not luhn_valid(digits):
                continue
            if len(digits) == 12 and not digits.startswith(_MAESTRO):
                continue
            ctx = self._context(text, m.start(), "CREDIT_CARD")
            yield Candidate(
                m.start(), m.end(), "CREDIT_CARD", 1.0 if ctx else 0.8, "pattern", "card"
            )

    def _npis(self, text: str) -> Iterator[Candidate]:
        if not self._want("NPI"):
            return
        for m in _NPI.finditer(text):
            if npi_valid(m.group()):
                ctx = self._context(text, m.start(), "NPI")
                yield Candidate(m.start(), m.end(), "NPI", 0.95 if ctx else 0.4, "pattern", "npi")

    def _deas(self, text: str) -> Iterator[Candidate]:
        if not self._want("DEA_NUMBER"):
            return
        for m in _DEA.finditer(text):
            if dea_valid(m.group()):
                ctx = self._context(text, m.start(), "DEA_NUMBER")
                yield Candidate(
                    m.start(), m.end(), "DEA_NUMBER", 0.95 if ctx else 0.7, "pattern", "dea"
                )

    def _vins(self, text: str) -> Iterator[Candidate]:
        if not self._want("VEHICLE_ID"):
            return
        for m in _VIN.finditer(text):
            if vin_valid(m.group()):
                yield Candidate(m.start(), m.end(), "VEHICLE_ID", 0.85, "pattern", "vin")

    def _mbis(self, text: str) -> Iterator[Candidate]:
        if not self._want("HEALTH_PLAN_NUMBER"):
            return
        for m in _MBI.finditer(text):
            yield Candidate(m.start(), m.end(), "HEALTH_PLAN_NUMBER", 0.75, "pattern", "mbi")

    def _dates(self, text: str) -> Iterator[Candidate]:
        if not self._want("DATE_TIME"):
            return
        for m in _DATE_NUMERIC.finditer(text):
            yield Candidate(m.start(), m.end(), "DATE_TIME", 0.7, "pattern", "date-numeric")
        if "/" in text:
            for m in _DATE_SHORT.finditer(text):
                ctx = self._context(text, m.start(), "DATE_TIME")
                yield Candidate(
                    m.start(), m.end(), "DATE_TIME", 0.6 if ctx else 0.2, "pattern", "date-short"
                )
        for m in _DATE_WORDS.finditer(text):
            s, e = _trim(text, m.start(), m.end())
            yield Candidate(s, e, "DATE_TIME", 0.85, "pattern", "date-words")

    def _ages(self, text: str) -> Iterator[Candidate]:
        if not self._want("AGE_OVER_89"):
            return
        for m in _AGE.finditer(text):
            before = text[max(0, m.start() - 6) : m.start()].lower()
            labelled = before.rstrip(": ").endswith(("age", "aged"))
            if m.group("sex") and _TEMPERATURE.search(text, max(0, m.start() - 16), m.start()):
                continue
            if m.group("tail") or labelled:
                yield Candidate(*m.span("v"), "AGE_OVER_89", 0.85, "pattern", "age")

    def _names(self, text: str) -> Iterator[Candidate]:
        if not self._want("PERSON"):
            return
        for rx, score, name in (
            (_TITLE_NAME, 0.8, "title-name"),
            (_NAME_LABEL, 0.7, "labelled-name"),
            (_NAME_CREDENTIAL, 0.8, "credential-name"),
        ):
            for m in rx.finditer(text):
                span = _strip_name(text, *m.span("v"))
                if span is not None:
                    yield Candidate(span[0], span[1], "PERSON", score, "pattern", name)

    def _addresses(self, text: str) -> Iterator[Candidate]:
        if self._want("STREET_ADDRESS"):
            for rx in (_STREET, _PO_BOX, _SECONDARY, _STREET_NUMBER_AFTER):
                for m in rx.finditer(text):
                    s, e = _trim(text, *m.span("v"))
                    yield Candidate(s, e, "STREET_ADDRESS", 0.8, "pattern", "street")
        if not self._want("LOCATION", "ZIP_CODE"):
            return
        for m in _CITY_STATE.finditer(text):
            if not m.group("zip") and m.group("state") in _CREDENTIAL_STATES:
                continue  # "Jane Roe, MD" is a physician, not a place in Maryland
            if m.group("zip"):
                yield Candidate(*m.span("zip"), "ZIP_CODE", 0.85, "pattern", "zip-after-state")
            span = _city_span(text, *m.span("city"))
            if span is not None:
                yield Candidate(span[0], span[1], "LOCATION", 0.7, "pattern", "city-state")

    def _facilities(self, text: str) -> Iterator[Candidate]:
        if not self._want("LOCATION"):
            return
        for m in _FACILITY.finditer(text):
            span = _city_span(text, *m.span("v"))
            if span is not None and span[1] - span[0] > 8:
                yield Candidate(span[0], span[1], "LOCATION", 0.6, "pattern", "facility")

    def _deny_terms(self, text: str) -> Iterator[Candidate]:
        for entity, rx in self._deny:  # type: ignore[attr-defined]
            for m in rx.finditer(text):
                yield Candidate(m.start(), m.end(), entity, 1.0, "deny", "deny-list")


def _city_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    words = list(re.finditer(r"\S+", text[start:end]))
    while words and words[0].group().rstrip(".,") in _CITY_STOP:
        words.pop(0)
    if not words:
        return None
    return start + words[0].start(), start + words[-1].end()
