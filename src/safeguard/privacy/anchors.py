"""Anchors that keep a privacy budget from being spent twice.

A ledger's hash chain catches an edited or removed entry *inside* the chain, but not a
ledger cut short at its tail, deleted outright, or replaced by a fresh one. So the head
of the ledger (:class:`~safeguard.privacy.ledger.LedgerAnchor`: entry count and newest
hash) is copied, after every entry, to places the ledger file does not control:

* ``<out>/privacy_ledger.anchor.json`` beside the trained model;
* the checkpoint (and its ledger copy ``dp_checkpoint.ledger.jsonl``);
* a per-dataset registry, ``$SAFEGUARD_HOME/ledgers/<sha256 of the data>.json``
  (``~/.safeguard`` by default), which follows the data from one output folder to the next;
* the signed training manifest (``ledger_head`` / ``ledger_entries``), which
  ``safeguard manifest verify`` checks against the ledger in the model folder.

:func:`open_run_ledger` opens the ledger a run will append to and refuses to go on when
the ledger does not extend every anchor (it was truncated or swapped), or when a fresh
ledger would start where earlier training left traces (a model, a checkpoint, an anchor, a
registry entry for the same data) unless the caller names the ledger to continue from.

Threat model: this stops a budget from being reset by deleting, truncating or replacing
ledger files, by training the same data into a new folder, or by mistake. It cannot stop
someone who deletes every copy (output folder, checkpoints, registry) *and* changes the
data's bytes; the signed manifests of earlier runs then remain the auditor's evidence.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from safeguard.errors import VerificationError
from safeguard.privacy.ledger import BudgetLedger, LedgerAnchor

__all__ = [
    "ANCHOR_NAME",
    "CHECKPOINT_LEDGER_SUFFIX",
    "open_run_ledger",
    "read_anchor",
    "registry_path",
]

log = logging.getLogger(__name__)

#: File in the output folder holding the ledger's anchor.
ANCHOR_NAME = "privacy_ledger.anchor.json"
#: Suffix of the ledger copy written beside a checkpoint (``dp_checkpoint.ledger.jsonl``).
CHECKPOINT_LEDGER_SUFFIX = ".ledger.jsonl"
#: Files in an output folder that show a model was already trained there.
_TRAINED_FILES = (
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "adapter_config.json",
    "adapter_model.safetensors",
    "privacy_report.json",
)


def registry_path(dataset_sha256: str) -> Path:
    """Registry file of one data set: ``$SAFEGUARD_HOME/ledgers/<sha256>.json``.

    ``SAFEGUARD_HOME`` defaults to ``~/.safeguard``; point it at shared storage to make the
    registry hold for a team rather than one account.
    """
    if not (len(dataset_sha256) == 64 and all(c in "0123456789abcdef" for c in dataset_sha256)):
        raise ValueError(f"`dataset_sha256` (={dataset_sha256!r}) must be 64 lower-case hex digits")
    home = Path(os.environ.get("SAFEGUARD_HOME") or Path.home() / ".safeguard")
    return home / "ledgers" / f"{dataset_sha256}.json"


def read_anchor(path: str | os.PathLike[str]) -> tuple[LedgerAnchor, str | None] | None:
    """The anchor stored in ``path`` and the ledger it names, or ``None`` if there is no file.

    Raises:
        VerificationError: The file exists but is not an anchor.
    """
    p = Path(path)
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerificationError(
            f"ledger anchor {str(p)!r} cannot be read ({exc}); refusing to train on "
            "(ε could be undercounted)"
        ) from exc
    ledger = data.get("ledger") if isinstance(data, dict) else None
    return LedgerAnchor.from_dict(data, source=f"anchor {str(p)!r}"), ledger


def _evidence(out: Path, checkpoint: Path | None) -> list[str]:
    found = [name for name in (*_TRAINED_FILES, ANCHOR_NAME) if (out / name).exists()]
    if checkpoint is not None:
        for p in (checkpoint, _checkpoint_ledger(checkpoint)):
            if p.exists():
                found.append(p.name)
    return found


def _checkpoint_ledger(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(CHECKPOINT_LEDGER_SUFFIX)


def open_run_ledger(
    out: str | os.PathLike[str],
    *,
    ledger_name: str = "privacy_ledger.jsonl",
    dataset_sha256: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    continue_from: str | os.PathLike[str] | None = None,
    resume: bool = False,
) -> BudgetLedger:
    """Open the ledger a DP run in ``out`` appends to, after checking it against every anchor.

    Args:
        out: The run's output folder (model, ledger, checkpoint).
        ledger_name: The ledger's file name in ``out``.
        dataset_sha256: SHA-256 of the training data; enables the per-dataset registry.
        checkpoint: The run's checkpoint path (its ledger copy is an anchor, and the
            ledger to continue from when resuming without the main ledger).
        continue_from: An earlier ledger to continue (e.g. after the output folder was lost,
            or to train the same data into a new folder); it is copied to ``out`` and must
            extend every anchor.
        resume: The run resumes from ``checkpoint``: a missing main ledger is rebuilt from
            the checkpoint's copy (still checked against every anchor).

    Returns:
        A :class:`BudgetLedger` on ``out/ledger_name`` whose anchor is kept up to date in
        ``out`` and in the registry after every entry.

    Raises:
        VerificationError: The ledger is truncated, swapped or missing where earlier
            training left anchors, or a fresh ledger would restart a data set's budget.
    """
    out = Path(out)
    path = out / ledger_name
    ckpt = Path(checkpoint) if checkpoint is not None else None
    anchors: list[tuple[str, LedgerAnchor]] = []
    found = read_anchor(out / ANCHOR_NAME)
    if found is not None:
        anchors.append((f"the anchor in {str(out / ANCHOR_NAME)!r}", found[0]))
    reg_path = registry_path(dataset_sha256) if dataset_sha256 else None
    reg = read_anchor(reg_path) if reg_path is not None else None
    if reg is not None:
        anchors.append((f"the registry entry for this data set ({str(reg_path)!r})", reg[0]))
    ckpt_ledger = _checkpoint_ledger(ckpt) if ckpt is not None else None
    if ckpt_ledger is not None and ckpt_ledger.exists():
        anchors.append(
            (
                f"the checkpoint's ledger {str(ckpt_ledger)!r}",
                BudgetLedger.load(ckpt_ledger).anchor(),
            )
        )

    source: Path | None = None
    if continue_from is not None:
        source = Path(continue_from)
    elif not (path.exists() and path.stat().st_size > 0):
        if resume and ckpt_ledger is not None and ckpt_ledger.exists():
            source = ckpt_ledger
        else:
            _refuse_fresh(out, path, ckpt, reg, reg_path)
    if source is not None:
        chosen = BudgetLedger.load(source)
        if path.exists() and path.stat().st_size > 0 and source.resolve() != path.resolve():
            current = BudgetLedger.load(path)
            anchors.append((f"the ledger already in {str(path)!r}", current.anchor()))
        for where, anchor in anchors:
            chosen.check_anchor(anchor, source=where)
        if source.resolve() != path.resolve():
            chosen.save(path)
            log.info("continuing the budget of %s (%d entries) in %s", source, len(chosen), path)
    ledger = BudgetLedger(path)
    for where, anchor in anchors:
        ledger.check_anchor(anchor, source=where)
    ledger.add_anchor_file(out / ANCHOR_NAME)
    if reg_path is not None:
        ledger.add_anchor_file(reg_path)
    return ledger


def _refuse_fresh(
    out: Path,
    path: Path,
    ckpt: Path | None,
    reg: tuple[LedgerAnchor, str | None] | None,
    reg_path: Path | None,
) -> None:
    """Raise unless a fresh ledger in ``out`` is really the first spend on this data."""
    evidence = _evidence(out, ckpt)
    earlier = reg is not None and reg[0].entries > 0
    if not evidence and not earlier:
        return
    hints = []
    if ckpt is not None and _checkpoint_ledger(ckpt).exists():
        hints.append(str(_checkpoint_ledger(ckpt)))
    if reg is not None and reg[1]:
        hints.append(reg[1])
    why = []
    if evidence:
        why.append(f"{str(out)!r} already holds {', '.join(evidence)}")
    if earlier:
        assert reg is not None and reg_path is not None
        why.append(
            f"this data set was already trained on with DP (a ledger of {reg[0].entries} entries; "
            f"registry {str(reg_path)!r})"
        )
    raise VerificationError(
        f"no ledger at {str(path)!r} but {'; '.join(why)}: starting a fresh ledger would spend the "
        "privacy budget again. Continue the earlier ledger with --ledger PATH"
        + (f" (e.g. {' or '.join(repr(h) for h in dict.fromkeys(hints))})" if hints else "")
        + ", or train into a new folder on data that has not been trained on"
    )
