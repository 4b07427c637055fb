"""The ledger's hash chain: canonical entries, their hashes, verification, and anchors.

Each entry carries the SHA-256 of the previous entry (``prev``) and its own (``hash``, over
the canonical JSON of the entry without ``hash``), so removing, reordering or editing any
entry breaks the chain. An anchor (entry count and newest hash) closes the gap a chain
leaves open: a ledger cut short at its tail (see :mod:`safeguard.privacy.anchors`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeguard.errors import VerificationError

__all__ = [
    "GENESIS",
    "LEDGER_VERSION",
    "LedgerAnchor",
    "canonical",
    "entry_hash",
    "read_verified",
    "verify_entries",
    "write_json_atomic",
]

#: ``prev`` of the first entry.
GENESIS = "0" * 64
LEDGER_VERSION = 1


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry is hashed and written as (sorted keys, no spaces, no NaN)."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``entry`` without its own ``hash``."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def write_json_atomic(path: Path, body: dict[str, Any]) -> None:
    """Replace ``path`` with ``body`` as JSON (through a temporary file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True, kw_only=True)
class LedgerAnchor:
    """The head of a ledger at one moment: how many entries it had and the newest hash.

    A hash chain proves that no entry was edited, removed or reordered *inside* the chain,
    but a ledger cut short at its tail is still a valid chain. Anchors close that gap: they
    are copied into places a truncated or deleted ledger cannot rewrite by itself (the
    checkpoint, the model folder, the signed training manifest, the per-dataset registry),
    and a ledger is only accepted if it *extends* every anchor it is shown
    (:meth:`BudgetLedger.check_anchor`).

    Attributes:
        entries: Number of entries the ledger had.
        head: SHA-256 (hex) of its newest entry (:data:`GENESIS` for an empty ledger).
    """

    entries: int
    head: str

    def to_dict(self) -> dict[str, Any]:
        return {"entries": self.entries, "head": self.head}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "anchor") -> LedgerAnchor:
        """Parse :meth:`to_dict` output; :class:`VerificationError` if it is malformed."""
        try:
            entries, head = data["entries"], data["head"]
        except (KeyError, TypeError) as exc:
            raise VerificationError(
                f"{source}: not a ledger anchor (needs `entries` and `head`)"
            ) from exc
        if not (
            isinstance(entries, int) and entries >= 0 and isinstance(head, str) and len(head) == 64
        ):
            raise VerificationError(f"{source}: malformed ledger anchor {data!r}")
        return cls(entries=entries, head=head)


def read_verified(path: Path) -> list[dict[str, Any]]:
    """The entries of the ledger file ``path``; :class:`VerificationError` unless the chain holds."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise VerificationError(f"cannot read ledger {str(path)!r}: {exc}") from exc
    entries = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VerificationError(
                f"ledger {str(path)!r} line {n} is not JSON ({exc.msg}); the ledger is corrupt: "
                "refusing to use it rather than restart the budget; restore it from a checkpoint"
            ) from exc
        if not isinstance(entry, dict):
            raise VerificationError(f"ledger {str(path)!r} line {n} is not a JSON object")
        entries.append(entry)
    verify_entries(entries, source=str(path))
    return entries


def verify_entries(entries: Sequence[dict[str, Any]], source: str) -> None:
    """Raise :class:`VerificationError` unless ``entries`` form an unbroken chain from genesis."""
    prev = GENESIS
    for n, entry in enumerate(entries):
        where = f"ledger {source!r} entry {n}"
        if entry.get("prev") != prev:
            raise VerificationError(
                f"{where}: hash chain broken (entry removed, reordered or edited); "
                "refusing to use it rather than restart the budget; restore it from a checkpoint"
            )
        if entry.get("index") != n:
            raise VerificationError(f"{where}: index {entry.get('index')!r} != {n}")
        if entry_hash(entry) != entry.get("hash"):
            raise VerificationError(
                f"{where}: content does not match its hash (edited); "
                "refusing to use it rather than restart the budget"
            )
        if n == 0 and entry.get("kind") != "run_start":
            raise VerificationError(f"{where}: the first entry must be a run_start")
        prev = entry["hash"]
