"""The HIPAA Safe Harbor pattern rules, one module per identifier, in one table.

:data:`PATTERN_RULES` is the registry :class:`~safeguard.pii.patterns.PatternDetector`
reads: each rule runs, in this order, when a detector wants one of its entities (a rule with
no entities, the label and deny-list rules, always runs and filters by entity itself).
Identifiers with a format are matched by shape and validated where a check digit exists;
identifiers that are just "some number" are matched only after a label (:mod:`.labelled`).
"""

from __future__ import annotations

from safeguard.pii.recognizers.rules import PatternRule
from safeguard.pii.recognizers.safe_harbor import (
    age,
    city_state,
    credit_card,
    dates,
    dea,
    deny,
    email_address,
    facility,
    ip_address,
    labelled,
    mac_address,
    mbi,
    npi,
    person,
    phone,
    ssn,
    street,
    url,
    vin,
)

__all__ = ["PATTERN_ENTITIES", "PATTERN_RULES", "PatternRule"]

#: Every pattern rule, in the order a detector runs them.
PATTERN_RULES: tuple[PatternRule, ...] = (
    PatternRule("labelled_ids", (), labelled.detect),
    PatternRule("email", ("EMAIL_ADDRESS",), email_address.detect),
    PatternRule("url", ("URL",), url.detect),
    PatternRule("ip", ("IP_ADDRESS",), ip_address.detect),
    PatternRule("mac", ("DEVICE_ID",), mac_address.detect),
    PatternRule("ssn", ("US_SSN",), ssn.detect),
    PatternRule("phone", ("PHONE_NUMBER", "FAX_NUMBER"), phone.detect),
    PatternRule("card", ("CREDIT_CARD",), credit_card.detect),
    PatternRule("npi", ("NPI",), npi.detect),
    PatternRule("dea", ("DEA_NUMBER",), dea.detect),
    PatternRule("vin", ("VEHICLE_ID",), vin.detect),
    PatternRule("mbi", ("HEALTH_PLAN_NUMBER",), mbi.detect),
    PatternRule("dates", ("DATE_TIME",), dates.detect),
    PatternRule("age", ("AGE_OVER_89",), age.detect),
    PatternRule("person", ("PERSON",), person.detect),
    PatternRule("street", ("STREET_ADDRESS",), street.detect),
    PatternRule("city_state", ("LOCATION", "ZIP_CODE"), city_state.detect),
    PatternRule("facility", ("LOCATION",), facility.detect),
    PatternRule("deny", (), deny.detect),
)

# Entities the pattern detectors can produce.
PATTERN_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS", "URL", "IP_ADDRESS", "US_SSN", "PHONE_NUMBER", "FAX_NUMBER", "CREDIT_CARD",
    "NPI", "DEA_NUMBER", "VEHICLE_ID", "DEVICE_ID", "HEALTH_PLAN_NUMBER", "ACCOUNT_NUMBER",
    "LICENSE_NUMBER", "MEDICAL_RECORD_NUMBER", "DATE_TIME", "AGE_OVER_89", "PERSON",
    "STREET_ADDRESS", "LOCATION", "ZIP_CODE",
)  # fmt: skip
