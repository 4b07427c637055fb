"""A seeded generator of labelled clinical-note sentences, for measuring scrubbers.

Each example is a sentence from a clinical-note template whose slots are filled with
synthetic identifiers (Faker, seeded) of every HIPAA Safe Harbor kind that text can carry,
plus distractors that are *not* PHI (years alone, durations, doses, vitals, ages under 90,
US states) so that precision is measured too. Spans are recorded while the text is built,
so labels are exact.

Templates are split into a development family and a held-out family
(``split="dev"`` uses only the former; ``split="holdout"`` only the latter; ``"all"`` both),
so a recognizer tuned on development sentences can be measured on sentence shapes it was
not tuned on.

>>> ex = generate_examples(3, seed=7)
>>> len(ex), all(ex[0].text[s:e] for s, e, _ in ex[0].spans)
(3, True)
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safeguard.pii.checksums import (
    dea_check_digit,
    luhn_check_digit,
    npi_check_digit,
    vin_check_digit,
)

__all__ = [
    "LabelledExample",
    "generate_examples",
    "parse_markup",
    "read_labelled_jsonl",
    "read_marked_notes",
    "write_labelled_jsonl",
]


@dataclass(frozen=True)
class LabelledExample:
    """A text with its gold spans ``(start, end, entity)``."""

    text: str
    spans: tuple[tuple[int, int, str], ...]
    template: int = -1

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "spans": [{"start": s, "end": e, "entity": t} for s, e, t in self.spans],
            "template": self.template,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelledExample:
        spans = tuple((int(d["start"]), int(d["end"]), str(d["entity"])) for d in data["spans"])
        return cls(text=data["text"], spans=spans, template=int(data.get("template", -1)))


def write_labelled_jsonl(examples: Iterable[LabelledExample], path: str | Path) -> Path:
    """Write examples as JSONL (``text`` + ``spans``)."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
    return path


def read_labelled_jsonl(path: str | Path) -> list[LabelledExample]:
    """Read JSONL with ``text`` and ``spans`` (``start``, ``end``, ``entity``) per line."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(LabelledExample.from_json(json.loads(line)))
    return out


# --------------------------------------------------------------------------- templates
# {ENTITY} or {ENTITY:variant} is PHI; {~name} is a non-PHI filler.

DEV_TEMPLATES: tuple[str, ...] = (
    "Pt {PERSON} (MRN: {MEDICAL_RECORD_NUMBER}) was admitted on {DATE_TIME} with {~condition}.",
    "{PERSON}, a {AGE_OVER_89}-year-old {~sex}, presented to the ED on {DATE_TIME:words} complaining of {~symptom}.",
    "Seen by Dr. {PERSON:last} in clinic today; started {~med} and will follow up in {~duration}.",
    "Patient lives at {STREET_ADDRESS}, {LOCATION}, {~state_abbr} {ZIP_CODE} with her daughter {PERSON:first}.",
    "Call back number {PHONE_NUMBER}; fax records to {FAX_NUMBER}.",
    "Contact the patient's son {PERSON} at {PHONE_NUMBER} or {EMAIL_ADDRESS}.",
    "SSN {US_SSN} on file; Medicare ID {HEALTH_PLAN_NUMBER:mbi}.",
    "Member ID {HEALTH_PLAN_NUMBER} verified with the insurer on {DATE_TIME}.",
    "Billing account #{ACCOUNT_NUMBER} was charged to card {CREDIT_CARD}.",
    "Prescriber NPI {NPI}, DEA {DEA_NUMBER}; {~med} {~dose} daily for {~duration}.",
    "Pacemaker serial number {DEVICE_ID} was interrogated without issues.",
    "The patient's car (VIN {VEHICLE_ID}) was involved in a collision on {DATE_TIME:words}.",
    "Patient portal login from IP {IP_ADDRESS} on {DATE_TIME}; see {URL} for the results.",
    "DOB: {DATE_TIME:numeric}. Driver's license {LICENSE_NUMBER}.",
    "Mr. {PERSON} is a {AGE_OVER_89} yo man with {~condition} since {~year}.",
    "{~age_young}-year-old with {~condition}, BP {~bp}, HR {~hr}; discharged home to {LOCATION}, {~state}.",
    "Referred by {PERSON}, MD, of {LOCATION:hospital} on {DATE_TIME:words}.",
    "Email results to {EMAIL_ADDRESS} and copy {PERSON} at {EMAIL_ADDRESS}.",
    "Ms. {PERSON:last} reports {~symptom} for {~duration}; pain {~pain}.",
    "Wife {PERSON:first} can be reached at {PHONE_NUMBER}.",
    "Insurance policy number {HEALTH_PLAN_NUMBER}, group {~group}.",
    "Paid copay with Maestro card {CREDIT_CARD:maestro} on {DATE_TIME:numeric}.",
    "Transferred from {LOCATION:hospital} in {LOCATION} on {DATE_TIME}.",
    "Address on file: {STREET_ADDRESS}, {LOCATION}, {~state_abbr} {ZIP_CODE}. Phone: {PHONE_NUMBER}.",
    "Insulin pump serial {DEVICE_ID} replaced; lot {~lot_text} discarded.",
    "License plate {VEHICLE_ID:plate} recorded by security on {DATE_TIME:words}.",
    "Follow-up with {PERSON} on {DATE_TIME:short} at the {~dept} clinic.",
    "Hemoglobin A1c {~a1c} in {~year}, repeat due {DATE_TIME:month_year}.",
    "She is {AGE_OVER_89} years old and was widowed in {~year}.",
    "Medical record number {MEDICAL_RECORD_NUMBER}, account {ACCOUNT_NUMBER}.",
)

HOLDOUT_TEMPLATES: tuple[str, ...] = (
    "On {DATE_TIME:words}, {PERSON} ({AGE_OVER_89}F) was brought in by her neighbor {PERSON}.",
    "Discharge summary for {PERSON}, MRN {MEDICAL_RECORD_NUMBER}, dictated by Dr. {PERSON}.",
    "Please mail the forms to {STREET_ADDRESS}, {LOCATION}, {~state} {ZIP_CODE}.",
    "Reach the caregiver {PERSON} by phone at {PHONE_NUMBER} (fax {FAX_NUMBER}).",
    "Card ending in a full number {CREDIT_CARD} was declined; account no. {ACCOUNT_NUMBER}.",
    "Device ID {DEVICE_ID} and IMEI {DEVICE_ID:imei} registered to the home monitor.",
    "{PERSON:first} {PERSON:last} reports the monitor uploads from {IP_ADDRESS} every {~duration}.",
    "Last seen {DATE_TIME:numeric}; next appointment {DATE_TIME:words} with Dr. {PERSON:last}.",
    "Medicaid number {HEALTH_PLAN_NUMBER}; SSN {US_SSN}; license number {LICENSE_NUMBER}.",
    "Vehicle identification number {VEHICLE_ID} noted in the police report from {LOCATION}.",
    "Signed by {PERSON}, NPI {NPI}, on {DATE_TIME}.",
    "A {~age_young} y/o man from {LOCATION} with {~condition}; {~med} {~dose} twice daily.",
)

_CONDITIONS = [
    "CHF exacerbation",
    "COPD",
    "type 2 diabetes",
    "pneumonia",
    "a hip fracture",
    "atrial fibrillation",
    "chest pain",
    "sepsis",
    "acute kidney injury",
    "cellulitis",
]
_SYMPTOMS = [
    "shortness of breath",
    "dizziness",
    "abdominal pain",
    "fatigue",
    "a productive cough",
    "left knee pain",
    "palpitations",
    "nausea",
]
_MEDS = [
    "metformin",
    "lisinopril",
    "furosemide",
    "apixaban",
    "atorvastatin",
    "insulin glargine",
    "amoxicillin",
    "prednisone",
    "Lasix",
    "Tylenol",
]
_DOSES = ["500 mg", "10 mg", "40 mg", "5 mg", "20 units", "875 mg", "1 g"]
_DURATIONS = ["3 days", "two weeks", "6 months", "10 days", "1 year", "48 hours"]
_DEPTS = ["cardiology", "endocrine", "wound care", "primary care", "oncology"]
_STATES = ["Ohio", "Texas", "California", "New York", "Florida", "Illinois", "Georgia", "Oregon"]
_ABBRS = ["OH", "TX", "CA", "NY", "FL", "IL", "GA", "OR", "MA", "WA", "PA", "AZ"]
_HOSPITAL_SUFFIX = ["Memorial Hospital", "General Hospital", "Medical Center", "Regional Hospital",
                    "Community Hospital", "Health Center"]  # fmt: skip

_SLOT = re.compile(r"\{(~?)([A-Za-z_0-9]+)(?::([a-z_]+))?\}")


class _Filler:
    def __init__(self, seed: int) -> None:
        from faker import Faker

        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)

    # PHI ---------------------------------------------------------------
    def PERSON(self, variant: str | None) -> str:
        f, r = self.fake, self.rng
        if variant == "last":
            return f.last_name()
        if variant == "first":
            return f.first_name()
        choice = r.random()
        if choice < 0.6:
            return f"{f.first_name()} {f.last_name()}"
        if choice < 0.8:
            return f"{f.first_name()} {r.choice('ABCDEFGHJKLMPRSTW')}. {f.last_name()}"
        if choice < 0.9:
            return f"{f.first_name()} {f.last_name()}-{f.last_name()}"
        return f"{f.first_name()} {f.first_name()} {f.last_name()}"

    def LOCATION(self, variant: str | None) -> str:
        if variant == "hospital":
            base = self.rng.choice(
                [self.fake.last_name(), self.fake.city(), "St. " + self.fake.first_name() + "'s"]
            )
            return f"{base} {self.rng.choice(_HOSPITAL_SUFFIX)}"
        return self.fake.city()

    def STREET_ADDRESS(self, variant: str | None) -> str:
        return self.fake.street_address()

    def ZIP_CODE(self, variant: str | None) -> str:
        return self.fake.zipcode_plus4() if self.rng.random() < 0.2 else self.fake.zipcode()

    def DATE_TIME(self, variant: str | None) -> str:
        d = self.fake.date_between(start_date="-60y", end_date="+1y")
        r = self.rng
        month = d.strftime("%B")
        forms = {
            "numeric": [f"{d.month:02d}/{d.day:02d}/{d.year}", f"{d.month}/{d.day}/{d.year % 100:02d}",
                        f"{d.year}-{d.month:02d}-{d.day:02d}", f"{d.month:02d}-{d.day:02d}-{d.year}"],
            "words": [f"{month} {d.day}, {d.year}", f"{month[:3]} {d.day}, {d.year}",
                      f"{d.day} {month} {d.year}", f"{month} {d.day}", f"{d.day}{_ord(d.day)} of {month}"],
            "short": [f"{d.month}/{d.day}", f"{month} {d.day}{_ord(d.day)}"],
            "month_year": [f"{month} {d.year}", f"{month[:3]} {d.year}"],
        }  # fmt: skip
        if variant in forms:
            return r.choice(forms[variant])
        return r.choice(forms["numeric"] + forms["words"])

    def AGE_OVER_89(self, variant: str | None) -> str:
        return str(self.rng.randint(90, 104))

    def PHONE_NUMBER(self, variant: str | None) -> str:
        if self.rng.random() < 0.7:
            return self.fake.phone_number()
        a, b, c = self.rng.randint(201, 989), self.rng.randint(200, 999), self.rng.randint(0, 9999)
        return self.rng.choice([f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"+1 ({a}) {b}-{c:04d}",
                                f"{a}.{b}.{c:04d} ext. {self.rng.randint(1, 999)}"])  # fmt: skip

    FAX_NUMBER = PHONE_NUMBER

    def EMAIL_ADDRESS(self, variant: str | None) -> str:
        return self.rng.choice(
            [self.fake.email(), self.fake.free_email(), self.fake.company_email()]
        )

    def US_SSN(self, variant: str | None) -> str:
        return self.fake.ssn()

    def MEDICAL_RECORD_NUMBER(self, variant: str | None) -> str:
        r = self.rng
        n = r.randint(10**5, 10**8 - 1)
        return r.choice(
            [str(n), f"{n:08d}", f"MR{n}", f"{r.choice('ABCH')}{n}", f"{n // 1000}-{n % 1000:03d}"]
        )

    def HEALTH_PLAN_NUMBER(self, variant: str | None) -> str:
        r = self.rng
        if variant == "mbi":
            letters = "ACDEFGHJKMNPQRTUVWXY"
            an = letters + "0123456789"
            return (f"{r.randint(1, 9)}{r.choice(letters)}{r.choice(an)}{r.randint(0, 9)}"
                    f"{r.choice(letters)}{r.choice(an)}{r.randint(0, 9)}"
                    f"{r.choice(letters)}{r.choice(letters)}{r.randint(0, 9)}{r.randint(0, 9)}")  # fmt: skip
        prefix = "".join(r.choice("ABCDEFGHJKLMNPRSTWXYZ") for _ in range(r.choice([1, 3])))
        return f"{prefix}{r.randint(10**7, 10**10 - 1)}"

    def ACCOUNT_NUMBER(self, variant: str | None) -> str:
        r = self.rng
        n = r.randint(10**7, 10**12 - 1)
        return r.choice([str(n), f"ACC-{n % 100000:05d}-{r.randint(10, 99)}", f"{n:012d}"])

    def LICENSE_NUMBER(self, variant: str | None) -> str:
        r = self.rng
        return r.choice([f"{r.choice('ABDFS')}{r.randint(10**6, 10**7 - 1)}",
                         f"S{r.randint(100, 999)}-{r.randint(1000, 9999)}-{r.randint(1000, 9999)}",
                         f"{r.randint(10**8, 10**9 - 1)}", f"MD{r.randint(10**5, 10**6 - 1)}"])  # fmt: skip

    def NPI(self, variant: str | None) -> str:
        body = str(self.rng.randint(1, 2)) + f"{self.rng.randint(0, 10**8 - 1):08d}"
        return body + npi_check_digit(body)

    def DEA_NUMBER(self, variant: str | None) -> str:
        six = f"{self.rng.randint(0, 999999):06d}"
        return (
            self.rng.choice("ABFGM") + self.fake.last_name()[0].upper() + six + dea_check_digit(six)
        )

    def VEHICLE_ID(self, variant: str | None) -> str:
        if variant == "plate":
            return self.fake.license_plate()
        chars = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
        vin = [self.rng.choice(chars) for _ in range(17)]
        vin[8] = "0"
        vin[8] = vin_check_digit("".join(vin))
        return "".join(vin)

    def DEVICE_ID(self, variant: str | None) -> str:
        r = self.rng
        if variant == "imei":
            body = "".join(str(r.randint(0, 9)) for _ in range(14))
            return body + luhn_check_digit(body)
        hexd = "0123456789ABCDEF"
        return r.choice([
            f"SN-{r.randint(10**4, 10**5 - 1)}{r.choice('ABCDEFGHJK')}{r.randint(10, 99)}",
            f"{r.choice(['PJN', 'RNG', 'XT'])}{r.randint(10**5, 10**7)}H",
            ":".join(r.choice(hexd) + r.choice(hexd) for _ in range(6)),
            f"{r.randint(10**9, 10**10 - 1)}",
        ])  # fmt: skip

    def URL(self, variant: str | None) -> str:
        return self.rng.choice([self.fake.url(), self.fake.uri(), "www." + self.fake.domain_name()])

    def IP_ADDRESS(self, variant: str | None) -> str:
        return self.fake.ipv6() if self.rng.random() < 0.15 else self.fake.ipv4()

    def CREDIT_CARD(self, variant: str | None) -> str:
        r = self.rng
        kind = "maestro" if variant == "maestro" else r.choice(
            ["visa", "visa19", "mc5", "mc2", "amex", "discover", "maestro"])  # fmt: skip
        prefix, length = {
            "visa": ("4", 16), "visa19": ("4", 19), "mc5": (str(r.randint(51, 55)), 16),
            "mc2": (str(r.randint(2221, 2720)), 16), "amex": (r.choice(["34", "37"]), 15),
            "discover": ("6011", 16),
            "maestro": (r.choice(["5018", "5020", "5038", "6304", "6759", "6761"]), r.choice([12, 13, 16, 19])),
        }[kind]  # fmt: skip
        body = prefix + "".join(str(r.randint(0, 9)) for _ in range(length - len(prefix) - 1))
        digits = body + luhn_check_digit(body)
        style = r.random()
        if style < 0.4 or length not in (15, 16):
            return digits
        groups = [digits[i : i + 4] for i in range(0, len(digits), 4)] if length == 16 else [
            digits[:4], digits[4:10], digits[10:]]  # fmt: skip
        return (" " if style < 0.75 else "-").join(groups)

    # non-PHI fillers ---------------------------------------------------
    def filler(self, name: str) -> str:
        r = self.rng
        table: dict[str, Callable[[], str]] = {
            "condition": lambda: r.choice(_CONDITIONS),
            "symptom": lambda: r.choice(_SYMPTOMS),
            "med": lambda: r.choice(_MEDS),
            "dose": lambda: r.choice(_DOSES),
            "duration": lambda: r.choice(_DURATIONS),
            "year": lambda: str(r.randint(1990, 2024)),
            "sex": lambda: r.choice(["woman", "man", "female", "male"]),
            "state": lambda: r.choice(_STATES),
            "state_abbr": lambda: r.choice(_ABBRS),
            "age_young": lambda: str(r.randint(18, 88)),
            "bp": lambda: f"{r.randint(100, 170)}/{r.randint(60, 99)}",
            "hr": lambda: str(r.randint(55, 120)),
            "pain": lambda: f"{r.randint(1, 10)}/10",
            "group": lambda: r.choice(["PPO", "HMO", "Gold", "Silver"]),
            "a1c": lambda: f"{r.randint(55, 110) / 10:.1f}%",
            "dept": lambda: r.choice(_DEPTS),
            "lot_text": lambda: r.choice(["A", "B", "expired"]),
        }
        return table[name]()


def _ord(n: int) -> str:
    if 11 <= n % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _render(template: str, filler: _Filler) -> tuple[str, list[tuple[int, int, str]]]:
    parts: list[str] = []
    spans: list[tuple[int, int, str]] = []
    pos = 0
    length = 0
    for m in _SLOT.finditer(template):
        lit = template[pos : m.start()]
        parts.append(lit)
        length += len(lit)
        tilde, name, variant = m.groups()
        value = filler.filler(name) if tilde else getattr(filler, name)(variant)
        if not tilde:
            spans.append((length, length + len(value), name))
        parts.append(value)
        length += len(value)
        pos = m.end()
    parts.append(template[pos:])
    return "".join(parts), spans


def generate_examples(
    n: int, seed: int, *, split: Literal["dev", "holdout", "all"] = "all"
) -> list[LabelledExample]:
    """``n`` labelled sentences drawn with a fixed seed (same seed, same sentences).

    Args:
        n: Number of sentences.
        seed: Seed for template choice and every synthetic value.
        split: Template family: ``dev`` (tuning), ``holdout`` (never tuned on) or ``all``.
    """
    if n < 0:
        raise ValueError(f"`n` (={n}) must be >= 0")
    pool: list[tuple[int, str]] = []
    if split in ("dev", "all"):
        pool += list(enumerate(DEV_TEMPLATES))
    if split in ("holdout", "all"):
        pool += [(len(DEV_TEMPLATES) + i, t) for i, t in enumerate(HOLDOUT_TEMPLATES)]
    if not pool:
        raise ValueError(f"`split` (={split!r}) must be 'dev', 'holdout' or 'all'")
    filler = _Filler(seed)
    out = []
    for _ in range(n):
        index, template = filler.rng.choice(pool)
        text, spans = _render(template, filler)
        out.append(LabelledExample(text=text, spans=tuple(spans), template=index))
    return out


def iter_texts(examples: Iterable[LabelledExample]) -> Iterator[str]:
    """Just the texts."""
    for ex in examples:
        yield ex.text


# --------------------------------------------------------------------------- hand-marked notes

_MARK = re.compile(r"\[\[([A-Z_0-9]+):(.+?)\]\]", re.DOTALL)


def parse_markup(marked: str) -> LabelledExample:
    """A labelled example from text whose gold spans are written ``[[ENTITY:text]]``.

    >>> ex = parse_markup("Seen by [[PERSON:Ana Diaz]] on [[DATE_TIME:3/4]].")
    >>> ex.text, ex.spans
    ('Seen by Ana Diaz on 3/4.', ((8, 16, 'PERSON'), (20, 23, 'DATE_TIME')))
    """
    parts: list[str] = []
    spans: list[tuple[int, int, str]] = []
    pos = 0
    length = 0
    for m in _MARK.finditer(marked):
        plain = marked[pos : m.start()]
        parts.append(plain)
        length += len(plain)
        value = m.group(2)
        spans.append((length, length + len(value), m.group(1)))
        parts.append(value)
        length += len(value)
        pos = m.end()
    parts.append(marked[pos:])
    text = "".join(parts)
    if "[[" in text or "]]" in text:
        raise ValueError(f"unbalanced [[ENTITY:text]] markup near {text[text.find('[[') :][:40]!r}")
    return LabelledExample(text=text, spans=tuple(spans))


def read_marked_notes(path: str | Path) -> list[LabelledExample]:
    """Notes from a file of ``### <id> <style>`` sections in ``[[ENTITY:text]]`` markup.

    Lines starting with ``#`` before the first section are comments; each note's text is its
    section without the header line and without trailing blank lines. ``template`` is the
    note's position in the file.
    """
    notes: list[list[str]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            notes.append([])
        elif notes:
            notes[-1].append(line)
    out = []
    for i, lines in enumerate(notes):
        ex = parse_markup("\n".join(lines).strip("\n"))
        out.append(LabelledExample(text=ex.text, spans=ex.spans, template=i))
    return out
