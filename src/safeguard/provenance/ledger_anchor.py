"""Check a DP privacy ledger against the anchor its training manifest signed.

``safeguard train`` keeps the privacy ledger in the model folder as
``privacy_ledger.jsonl``: one JSON object per line, each with its 0-based ``index`` and the
``hash`` of the entry (chained to the one before). The training manifest records the
ledger's *anchor* in its ``privacy-ledger`` byproduct: ``ledger_entries`` (how many entries)
and ``ledger_head`` (the newest entry's ``hash``).

A hash chain shows that no entry inside it was edited, removed or reordered, but a ledger
cut short at its tail, grown after signing, or with its newest entry replaced is still a
well-formed chain; the signed anchor catches those::

    manifest  privacy-ledger {ledger_entries: N, ledger_head: H}
                   |                          |
                   v                          v
    model/privacy_ledger.jsonl   N non-blank lines;   last line: index == N-1, hash == H

The file is read as plain JSON lines: this module neither imports :mod:`safeguard.privacy`
nor recomputes entry hashes (``BudgetLedger.load`` does that when the ledger is used).
Stdlib only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["LEDGER_FILE", "compare_ledger", "recorded_anchor"]

#: The ledger's file name inside a trained model folder.
LEDGER_FILE = "privacy_ledger.jsonl"


def _short(sha: str) -> str:
    return f"sha256:{sha[:12]}..."


def recorded_anchor(annotations: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """``(ledger_entries, ledger_head)`` from a privacy-ledger byproduct's annotations.

    Either may be ``None`` (not recorded).

    >>> recorded_anchor({"epsilon_spent": 1.0, "ledger_entries": 3, "ledger_head": "ab" * 32})[0]
    3
    >>> recorded_anchor({"epsilon_spent": 1.0})
    (None, None)

    Raises:
        ValueError: A recorded value has the wrong type (the message names it).
    """
    entries = annotations.get("ledger_entries")
    head = annotations.get("ledger_head")
    if entries is not None and (
        isinstance(entries, bool) or not isinstance(entries, int) or entries < 0
    ):
        raise ValueError(
            f"the manifest's ledger_entries (={entries!r}) is not a count of ledger entries"
        )
    if head is not None and not isinstance(head, str):
        raise ValueError(f"the manifest's ledger_head (={head!r}) is not a hex sha256")
    return entries, head


def _scan(path: Path) -> tuple[int, bytes | None]:
    """Number of non-blank lines and the last of them (stripped), reading line by line."""
    count = 0
    last: bytes | None = None
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.strip()
            if line:
                count += 1
                last = line
    return count, last


def compare_ledger(
    path: str | os.PathLike[str], *, entries: int | None, head: str | None
) -> list[str]:
    """What differs between a ledger file and the anchor a manifest recorded.

    Args:
        path: The ledger file (JSON lines).
        entries: ``ledger_entries`` from the manifest, or ``None``.
        head: ``ledger_head`` from the manifest, or ``None``.

    Returns:
        One sentence per difference; empty when the file matches the anchor. A ledger of 0
        entries matches an empty or absent file.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "l.jsonl").write_text('{"index": 0, "hash": "aa"}\\n{"index": 1, "hash": "bb"}\\n')
    >>> compare_ledger(d / "l.jsonl", entries=2, head="bb")
    []
    >>> compare_ledger(d / "l.jsonl", entries=4, head="dd")
    ['ledger truncated: manifest records 4 entries, file has 2']
    """
    p = Path(path)
    if not p.is_file():
        if entries == 0:  # an empty ledger: nothing was recorded, absent or empty file alike
            return []
        recorded = []
        if entries is not None:
            recorded.append(f"{entries} entries")
        if head is not None:
            recorded.append(f"head {_short(head)}")
        return [f"ledger missing: the manifest records a ledger of {', '.join(recorded)}"]
    try:
        count, last = _scan(p)
    except OSError as exc:
        return [f"ledger cannot be read: {exc}"]
    if entries is not None and count != entries:
        if count < entries:
            return [f"ledger truncated: manifest records {entries} entries, file has {count}"]
        return [
            f"ledger has entries the manifest does not record: manifest records {entries} "
            f"entries, file has {count}"
        ]
    if last is None:
        if head is not None and entries is None:
            return [f"ledger is empty: the manifest records head {_short(head)}"]
        return []
    try:
        entry = json.loads(last)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [f"ledger's last line is not JSON ({exc}); it was edited or cut mid-line"]
    if not isinstance(entry, dict):
        return ["ledger's last line is not a JSON object; it was edited"]
    problems = []
    if entries is not None and entry.get("index") != entries - 1:
        problems.append(
            f"ledger's last entry has index {entry.get('index')!r}; with the {entries} entries "
            f"the manifest records it must be {entries - 1}"
        )
    if head is not None and entry.get("hash") != head:
        got = entry.get("hash")
        shown = _short(got) if isinstance(got, str) else repr(got)
        problems.append(
            f"ledger's last entry differs from the one the manifest records: its hash is "
            f"{shown}, the manifest's ledger_head is {_short(head)} (the entry was edited or "
            "replaced)"
        )
    return problems
