"""Operators: what replaces a finding. Registered by name; an unknown name lists the known ones.

================  ======================================================  ============
name              output                                                  needs a key
================  ======================================================  ============
``redact``        ``[REDACTED]`` (param ``replacement``)                  no
``tag``           ``<PERSON_1>``: one index per distinct value per        no
                  document and entity type
``pseudonym``     ``<PERSON_3f9a1c2b0d>``: HMAC of the value; the same     yes
                  value gets the same pseudonym across the whole dataset
``surrogate``     a realistic value of the same shape (Faker seeded by    yes
                  the HMAC; digits/letters replaced keeping separators;
                  check digits recomputed; dates shifted per patient)
``date_shift``    the date moved by a per-patient number of days, same    yes
                  format (unparseable dates fall back to ``tag``)
``zip3``          the first 3 ZIP digits + ``XX``; ``000XX`` for the      no
                  sparsely populated 3-digit areas (Safe Harbor rule)
``keep``          unchanged (count only)                                  no
================  ======================================================  ============

Raw values are hashed with the key and never stored; nothing here logs a value.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from safeguard.errors import ConfigError
from safeguard.pii.checksums import (
    dea_check_digit,
    luhn_check_digit,
    npi_check_digit,
    vin_check_digit,
)
from safeguard.pii.dates import shift_date_text
from safeguard.pii.keys import PseudonymKey

__all__ = [
    "KEYED_OPERATORS",
    "OPERATORS",
    "DocumentContext",
    "apply_operator",
    "register_operator",
]

OperatorFn = Callable[["DocumentContext", str, str, Mapping[str, Any]], str]

OPERATORS: dict[str, OperatorFn] = {}
#: Operators that need a :class:`~safeguard.pii.keys.PseudonymKey`.
KEYED_OPERATORS: set[str] = set()


def register_operator(
    name: str, fn: OperatorFn, *, keyed: bool = False, force: bool = False
) -> None:
    """Register an operator ``fn(ctx, entity, value, params) -> replacement`` under ``name``."""
    if name in OPERATORS and not force:
        raise ConfigError(f"operator {name!r} is already registered; pass force=True to replace it")
    OPERATORS[name] = fn
    if keyed:
        KEYED_OPERATORS.add(name)


def _normalise(entity: str, value: str) -> str:
    """Canonical form of a value, so that formatting variants share a pseudonym."""
    digits = re.sub(r"\D", "", value)
    if entity in {"PHONE_NUMBER", "FAX_NUMBER"} and len(digits) >= 10:
        core = re.split(r"(?i)\s*(?:x|ext\.?|extension|#)\s*(?=\d+$)", value.strip())[0]
        digits = re.sub(r"\D", "", core)
        return digits[-10:]
    if entity in {"US_SSN", "CREDIT_CARD", "NPI", "ZIP_CODE"} and digits:
        return digits
    return " ".join(value.casefold().split())


@dataclass
class DocumentContext:
    """State shared by the operators within one document.

    Attributes:
        key: Key for keyed operators (None when no keyed operator is configured).
        patient_id: Groups documents for date shifting (None: the document is its own group).
        doc_digest: sha256 of the document, used as the group when ``patient_id`` is None.
        date_shift_days: Largest absolute shift.
        restricted_zip3: 3-digit prefixes replaced by ``000``.
    """

    key: PseudonymKey | None = None
    patient_id: str | None = None
    doc_digest: str = ""
    date_shift_days: int = 365
    restricted_zip3: frozenset[str] = frozenset()
    tags: dict[str, dict[str, int]] = field(default_factory=dict)
    _shift: int | None = None

    def require_key(self, operator: str) -> PseudonymKey:
        if self.key is None:
            raise ConfigError(
                f"operator {operator!r} needs a pseudonym key; pass `key=PseudonymKey.load(path)` "
                "to the Scrubber (CLI: --key-file)"
            )
        return self.key

    def shift_days(self) -> int:
        """This patient's date shift, in ``[-date_shift_days, date_shift_days]`` minus zero."""
        if self._shift is None:
            key = self.require_key("date_shift")
            group = self.patient_id if self.patient_id is not None else "doc:" + self.doc_digest
            raw = int.from_bytes(key.digest("date_shift", group)[:8], "big")
            span = self.date_shift_days
            shift = raw % (2 * span + 1) - span
            self._shift = shift if shift != 0 else span  # a zero shift would leak the date
        return self._shift


def apply_operator(
    name: str, ctx: DocumentContext, entity: str, value: str, params: Mapping[str, Any]
) -> str:
    """Apply the operator ``name`` to one finding's value."""
    try:
        fn = OPERATORS[name]
    except KeyError:
        known = ", ".join(sorted(OPERATORS))
        raise ConfigError(f"unknown operator {name!r}; known: {known}") from None
    return fn(ctx, entity, value, params)


# --------------------------------------------------------------------------- operators


def _redact(ctx: DocumentContext, entity: str, value: str, params: Mapping[str, Any]) -> str:
    return str(params.get("replacement", "[REDACTED]"))


def _tag(ctx: DocumentContext, entity: str, value: str, params: Mapping[str, Any]) -> str:
    seen = ctx.tags.setdefault(entity, {})
    norm = _normalise(entity, value)
    index = seen.setdefault(norm, len(seen) + 1)
    return f"<{entity}_{index}>"


def _pseudonym(ctx: DocumentContext, entity: str, value: str, params: Mapping[str, Any]) -> str:
    key = ctx.require_key("pseudonym")
    length = int(params.get("length", 10))
    digest = key.digest("pseudonym", entity, _normalise(entity, value)).hex()[:length]
    return f"<{entity}_{digest}>"


def _keep(ctx: DocumentContext, entity: str, value: str, params: Mapping[str, Any]) -> str:
    return value


def _zip3(ctx: DocumentContext, entity: str, value: str, params: Mapping[str, Any]) -> str:
    digits = re.sub(r"\D", "", value)
    if len(digits) < 5:
        return _tag(ctx, entity, value, params)
    prefix = digits[:3]
    if prefix in ctx.restricted_zip3:
        prefix = "000"
    return prefix + str(params.get("fill", "XX"))


def _date_shift(ctx: DocumentContext, entity: str, value: str, params: Mapping[str, Any]) -> str:
    shifted = shift_date_text(value, ctx.shift_days())
    return shifted if shifted is not None else _tag(ctx, entity, value, params)


_FAKER_LOCK = threading.Lock()
_FAKER: Any = None


def _faker() -> Any:
    global _FAKER
    if _FAKER is None:
        try:
            from faker import Faker
        except ImportError as exc:  # pragma: no cover - faker ships with the pii extra
            from safeguard.errors import missing_dependency

            raise missing_dependency("faker", "pii") from exc
        _FAKER = Faker("en_US")
    return _FAKER


def _shape(value: str, rng: random.Random) -> str:
    """Replace each digit by a digit and each letter by a letter of the same case."""
    out = []
    for ch in value:
        if ch.isdigit():
            out.append(str(rng.randrange(10)))
        elif ch.isalpha() and ch.isascii():
            letter = chr(rng.randrange(26) + 65)
            out.append(letter if ch.isupper() else letter.lower())
        else:
            out.append(ch)
    return "".join(out)


def _set_digits(template: str, digits: str) -> str:
    it = iter(digits)
    return "".join(next(it) if ch.isdigit() else ch for ch in template)


def _surrogate_digits(entity: str, value: str, rng: random.Random) -> str:
    if entity in {"PHONE_NUMBER", "FAX_NUMBER"}:
        m = re.match(
            r"^(\+1[\s.-]?|001[\s.-]|1[\s.-])?(.*?)(\s*(?:x|ext\.?|extension|#)\s*\d+)?$", value
        )
        prefix, core, ext = (
            (m.group(1) or "", m.group(2), m.group(3) or "") if m else ("", value, "")
        )
        new = _shape(core, rng)
        digits = [c for c in new if c.isdigit()]
        if len(digits) >= 10:  # NANP: area code and exchange start with 2-9
            digits[0] = str(rng.randrange(2, 10))
            digits[3] = str(rng.randrange(2, 10))
            new = _set_digits(new, "".join(digits))
        return prefix + new + re.sub(r"\d", lambda _: str(rng.randrange(10)), ext)
    new = _shape(value, rng)
    digits = re.sub(r"\D", "", new)
    if entity == "CREDIT_CARD" and len(digits) >= 13:
        first = re.sub(r"\D", "", value)[0]
        body = first + digits[1:-1]
        new = _set_digits(new, body + luhn_check_digit(body))
    elif entity == "NPI" and len(digits) == 10:
        body = "1" + digits[1:9]
        new = _set_digits(new, body + npi_check_digit(body))
    elif entity == "DEA_NUMBER" and len(new) == 9:
        new = value[0] + new[1].upper() + new[2:8] + dea_check_digit(new[2:8])
    elif entity == "VEHICLE_ID" and len(new) == 17:
        new = "".join(c if c not in "IOQioq" else "X" for c in new).upper()
        new = new[:8] + vin_check_digit(new[:8] + "0" + new[9:]) + new[9:]
    elif entity == "US_SSN" and len(digits) == 9:
        area = f"{rng.randrange(1, 900):03d}"
        area = "667" if area == "666" else area
        body = area + f"{rng.randrange(1, 100):02d}" + f"{rng.randrange(1, 10000):04d}"
        new = _set_digits(new, body)
    return new


def _surrogate(ctx: DocumentContext, entity: str, value: str, params: Mapping[str, Any]) -> str:
    key = ctx.require_key("surrogate")
    if entity == "DATE_TIME":
        return _date_shift(ctx, entity, value, params)
    if entity == "AGE_OVER_89":
        return "90"
    if entity == "ZIP_CODE":
        return _zip3(ctx, entity, value, params)
    seed = int.from_bytes(key.digest("surrogate", entity, _normalise(entity, value))[:8], "big")
    rng = random.Random(seed)
    if entity in {"PERSON", "LOCATION", "STREET_ADDRESS", "EMAIL_ADDRESS", "URL", "IP_ADDRESS"}:
        with _FAKER_LOCK:
            fake = _faker()
            fake.seed_instance(seed)
            if entity == "PERSON":
                n = len(value.split())
                parts = [fake.first_name() for _ in range(max(0, n - 1))] + [fake.last_name()]
                out = " ".join(parts)
                if "," in value:  # "Last, First"
                    out = f"{parts[-1]}, {' '.join(parts[:-1]) or fake.first_name()}"
            elif entity == "LOCATION":
                out = fake.city()
            elif entity == "STREET_ADDRESS":
                out = fake.street_address()
            elif entity == "EMAIL_ADDRESS":
                out = f"{fake.user_name()}@example.org"
            elif entity == "URL":
                out = "https://" + fake.domain_word() + ".example.org/"
            else:
                out = fake.ipv6() if ":" in value else fake.ipv4_private()
        if value.isupper() and entity in {"PERSON", "LOCATION", "STREET_ADDRESS"}:
            out = out.upper()
        return out
    return _surrogate_digits(entity, value, rng)


register_operator("redact", _redact)
register_operator("tag", _tag)
register_operator("pseudonym", _pseudonym, keyed=True)
register_operator("surrogate", _surrogate, keyed=True)
register_operator("date_shift", _date_shift, keyed=True)
register_operator("zip3", _zip3)
register_operator("keep", _keep)


def document_digest(text: str) -> str:
    """sha256 hex of a document (groups its dates when no patient id is given)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
