"""IP_ADDRESS: IPv4 (higher after a context word) and valid IPv6."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from safeguard.pii.recognizers.rules import Scope
from safeguard.pii.types import Candidate

_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?:/\d{1,2})?(?![\d.]\d)"
)
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Fa-f:])")


def detect(text: str, scope: Scope) -> Iterator[Candidate]:
    if "." in text:
        for m in _IPV4.finditer(text):
            score = 0.9 if scope.has_context(text, m.start(), "IP_ADDRESS") else 0.6
            yield Candidate(m.start(), m.end(), "IP_ADDRESS", score, "pattern", "ipv4")
    if "::" in text or text.count(":") >= 3:
        for m in _IPV6.finditer(text):
            try:
                ipaddress.IPv6Address(m.group())
            except ValueError:
                continue
            yield Candidate(m.start(), m.end(), "IP_ADDRESS", 0.8, "pattern", "ipv6")
