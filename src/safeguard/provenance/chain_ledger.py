"""A training manifest's privacy-ledger byproduct, and the check of the ledger file against it.

The ledger file itself is read as plain JSON lines by
:mod:`safeguard.provenance.ledger_anchor`; this module turns the comparison into a
:class:`~safeguard.provenance.chain_result.ChainLink`.
"""

from __future__ import annotations

import os
from typing import Any

from safeguard.provenance.chain_result import ChainLink, manifest_label, short_digest
from safeguard.provenance.ledger_anchor import LEDGER_FILE, compare_ledger, recorded_anchor
from safeguard.provenance.manifest import Manifest

__all__ = ["check_ledger", "ledger_annotations"]


def ledger_annotations(training: Manifest) -> dict[str, Any] | None:
    """The annotations of a training manifest's ``privacy-ledger`` byproduct, if it has one."""
    for item in training.statement.predicate.get("runDetails", {}).get("byproducts", []):
        if isinstance(item, dict) and item.get("name") == "privacy-ledger":
            ann = item.get("annotations")
            return ann if isinstance(ann, dict) else None
    return None


def check_ledger(
    training: Manifest, *, base_dir: str | os.PathLike[str] | None = None
) -> ChainLink | None:
    """Check the privacy ledger in a training manifest's model folder against its anchor.

    Applies when the manifest's ``privacy-ledger`` byproduct records ``ledger_entries`` and/or
    ``ledger_head`` and a subject folder is present: the folder's ``privacy_ledger.jsonl``
    must have exactly ``ledger_entries`` non-blank lines, and its last line ``index ==
    ledger_entries - 1`` and ``hash == ledger_head``. A ledger absent from a present folder
    fails. The file is read as plain JSON lines (see
    :mod:`safeguard.provenance.ledger_anchor`).

    Args:
        training: A manifest; other kinds return ``None``.
        base_dir: Folder subject names are relative to (default: the manifest's folder).

    Returns:
        A :class:`ChainLink` named ``<training manifest>: privacy ledger``, or ``None`` when
        nothing applies (no anchor recorded, or no subject folder present; a missing subject
        is reported by the manifest's own check).
    """
    if training.kind != "training":
        return None
    annotations = ledger_annotations(training)
    if not annotations:
        return None
    name = f"{manifest_label(training)}: privacy ledger"
    try:
        entries, head = recorded_anchor(annotations)
    except ValueError as exc:
        return ChainLink(name=name, ok=False, detail=str(exc))
    if entries is None and head is None:
        return None
    folders = [training.subject_path(s.name, base_dir) for s in training.statement.subjects]
    folders = [f for f in folders if f.is_dir()]
    if not folders:
        return None
    ledgers = [f / LEDGER_FILE for f in folders if (f / LEDGER_FILE).is_file()]
    target = ledgers[0] if ledgers else folders[0] / LEDGER_FILE
    problems = compare_ledger(target, entries=entries, head=head)
    if problems:
        fix = (
            f"restore {LEDGER_FILE} of this training run into {str(target.parent)!r}"
            if not ledgers
            else "the ledger in the model folder is not the one this manifest signed (cut short, "
            "grown, or its newest entry replaced); restore this run's ledger from its checkpoint "
            "or a backup"
        )
        return ChainLink(
            name=name, ok=False, detail=f"{str(target)!r}: {'; '.join(problems)}; {fix}"
        )
    recorded = []
    if entries is not None:
        recorded.append(f"{entries} entries")
    if head is not None:
        recorded.append(f"head {short_digest(head)}")
    return ChainLink(
        name=name,
        ok=True,
        detail=f"{str(target)!r} matches the manifest's anchor ({', '.join(recorded)})",
    )
