"""Field paths into nested records: ``text``, ``note.body``, ``messages.*.content``.

``*`` walks every element of a list (or every value of a mapping).

>>> rec = {"messages": [{"content": "a"}, {"content": "b"}], "meta": {"id": 7}}
>>> [p[0][p[1]] for p in locate(rec, "messages.*.content")]
['a', 'b']
>>> locate(rec, "meta.missing")
Traceback (most recent call last):
...
KeyError: "field 'meta.missing' not found (no key 'missing' under 'meta')"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["locate", "locate_texts", "parse_path"]


def parse_path(path: str) -> tuple[str, ...]:
    """Split a dotted path; every part must be non-empty."""
    parts = tuple(path.split("."))
    if not path or any(not p for p in parts):
        raise ValueError(f"field path {path!r} is empty or has an empty part; e.g. 'note.text'")
    return parts


def locate(record: Any, path: str) -> list[tuple[Any, Any]]:
    """All ``(container, key)`` pairs the path points to (``container[key]`` is the value).

    Raises:
        KeyError: A named key is missing (the message names the path and the missing part).
    """
    parts = parse_path(path)
    frontier: list[tuple[Any, Any]] = [({"": record}, "")]
    walked: list[str] = []
    for part in parts:
        nxt: list[tuple[Any, Any]] = []
        for container, key in frontier:
            node = container[key]
            if part == "*":
                if isinstance(node, list):
                    nxt.extend((node, i) for i in range(len(node)))
                elif isinstance(node, dict):
                    nxt.extend((node, k) for k in node)
                continue
            if isinstance(node, dict) and part in node:
                nxt.append((node, part))
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                nxt.append((node, int(part)))
            else:
                under = ".".join(walked) or "the record"
                raise KeyError(f"field {path!r} not found (no key {part!r} under {under!r})")
        frontier = nxt
        walked.append(part)
    return frontier


def locate_texts(
    record: Any, fields: Sequence[str], patient_field: str | None = None
) -> tuple[str | None, list[tuple[Any, Any]]]:
    """The patient id and every ``(container, key)`` holding a text to scrub in ``record``.

    ``None`` values are skipped (nothing to scrub); the patient id is the first value the
    ``patient_field`` path reaches, as a string, or ``None``.

    Raises:
        KeyError: A field (or the patient field) is missing.
        TypeError: A field holds something other than a string or ``None``.
    """
    pid = None
    if patient_field:
        found = locate(record, patient_field)
        pid = str(found[0][0][found[0][1]]) if found else None
    slots: list[tuple[Any, Any]] = []
    for f in fields:
        for container, key in locate(record, f):
            value = container[key]
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"field {f!r} is a {type(value).__name__}, expected a string")
            slots.append((container, key))
    return pid, slots
