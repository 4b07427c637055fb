"""Walk a chain of manifests: generation -> training -> scrub -> raw dataset.

Each manifest is verified on its own (signature, predicate schema, digests of
subject files that are present); then each *link* is checked: the digest a
later step consumed must be the subject digest of an earlier step's manifest.

::

    generation.model.digest        == training.subject (model folder)
    training.resolvedDependencies  == scrub.outputs / scrub.subject  (role: dataset)
    scrub.inputs                   == dataset.subject (raw data)

A training manifest that records its privacy ledger's anchor (``ledger_entries``,
``ledger_head``) also has the ledger in its model folder checked against it
(:mod:`safeguard.provenance.ledger_anchor`).

With a policy, the run must also satisfy it: epsilon spent <= the policy's
``privacy.target_epsilon`` (and delta), the scrub run used
``provenance.required_scrub_policy``, generations carry the required watermark,
every manifest is signed by a trusted key when ``signing_required``, and every
subject is present and checked when ``require_subjects``.
A failed check is reported as a named link, e.g. ``training -> scrub``.

A subject that is not present (and not required) is never counted as verified: it is
listed in :attr:`ChainResult.unchecked` and :attr:`ChainResult.verdict` says so.

>>> broken = ChainLink(name="training -> scrub", ok=False, detail="no scrub manifest ...")
>>> ChainResult(links=(broken,), manifests=()).verdict
'FAILED: broken link(s): training -> scrub'

The pieces: :mod:`~safeguard.provenance.chain_result` (what a walk returns),
:mod:`~safeguard.provenance.chain_walk` (the walk), :mod:`~safeguard.provenance.chain_ledger`
(the ledger check) and :mod:`~safeguard.provenance.chain_policy` (the policy checks). Every
name stays importable from here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from safeguard.errors import SafeguardError, UsageError
from safeguard.provenance.chain_ledger import check_ledger
from safeguard.provenance.chain_policy import (
    check_policy,
    required_by,
    signatures_skipped_link,
    subjects_skipped_link,
    trusted_keys,
)
from safeguard.provenance.chain_result import ChainError, ChainLink, ChainResult, unchecked_note
from safeguard.provenance.chain_walk import Walker, verify_one
from safeguard.provenance.keys import PublicKey
from safeguard.provenance.manifest import Manifest, load_manifest

__all__ = [
    "ChainError",
    "ChainLink",
    "ChainResult",
    "check_ledger",
    "check_policy",
    "load_manifests",
    "unchecked_note",
    "verify_chain",
    "verify_manifests",
]

log = logging.getLogger(__name__)


def load_manifests(paths: Iterable[str | os.PathLike[str]]) -> list[Manifest]:
    """Load manifest files; a folder contributes every ``*.json`` in it that is a manifest.

    Files given one by one must be manifests; JSON files in a folder that are not DSSE
    envelopes of a known predicate are skipped (and logged at debug level).
    """
    found: list[Manifest] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in sorted(p.glob("*.json")):
                try:
                    found.append(load_manifest(child))
                except (SafeguardError, ValueError, OSError) as exc:
                    log.debug("skipping %s: %s", child, exc)
        else:
            found.append(load_manifest(p))
    return found


def verify_chain(
    start: Manifest | str | os.PathLike[str],
    *,
    manifests: Sequence[Manifest | str | os.PathLike[str]] | None = None,
    public_keys: Sequence[PublicKey] = (),
    policy: Any = None,
    require_signature: bool | None = None,
    check_subjects: bool = True,
    require_subjects: bool = False,
) -> ChainResult:
    """Walk from ``start`` (usually a generation manifest) back to raw data.

    Args:
        start: The manifest to start from.
        manifests: Candidate manifests (or files/folders); default: every manifest in the
            start's folder.
        public_keys: Trusted public keys.
        policy: A :class:`safeguard.policy.Policy` the run must satisfy, or ``None``.
        require_signature: Whether each manifest needs a trusted signature; default: the
            policy's ``provenance.signing_required``, else True when keys are given.
        check_subjects: Recompute digests of subject files that are present (and check a
            training run's privacy ledger against its anchor).
        require_subjects: Fail a manifest whose subject is not present even when the policy
            does not require it (a policy with ``provenance.require_subjects`` always does).
            Otherwise a missing subject is listed in :attr:`ChainResult.unchecked`. Subject
            names are relative to each manifest's folder.

    Returns:
        A :class:`ChainResult`; call :meth:`ChainResult.raise_for_failure` to raise on a
        broken link.

    Raises:
        UsageError: Signatures are required but no public key was given.
    """
    first = start if isinstance(start, Manifest) else load_manifest(start)
    pool = _pool(first, manifests)
    prov = getattr(policy, "provenance", None)
    if require_signature is None:
        require_signature = bool(prov.signing_required) if prov is not None else bool(public_keys)
    keys = trusted_keys(public_keys, policy)
    if require_signature and not keys:
        raise UsageError(
            "signatures are required (policy provenance.signing_required or --pubkey) but no trusted "
            "public key was given; pass --pubkey KEY.pub, or --allow-unsigned to skip signature checks"
        )
    walker = Walker(
        pool,
        keys,
        int(getattr(prov, "min_signatures", 1) or 1),
        require_signature,
        check_subjects,
        required_by(policy, require_subjects),
    )
    walker.walk(first)
    links = list(walker.links)
    if policy is not None:
        for extra in (
            subjects_skipped_link(policy, check_subjects),
            signatures_skipped_link(
                policy, require_signature, "; verify with --pubkey instead of --allow-unsigned"
            ),
        ):
            if extra is not None:
                links.append(extra)
        links.extend(check_policy(walker.walked, policy))
    return ChainResult(
        links=tuple(links),
        manifests=tuple(walker.walked),
        unchecked=tuple(walker.unchecked),
        subjects_skipped=not check_subjects,
        signatures_checked=require_signature or bool(keys),
    )


def _pool(
    first: Manifest, manifests: Sequence[Manifest | str | os.PathLike[str]] | None
) -> list[Manifest]:
    """The manifests a walk may follow: those given (or the start's folder), then the start."""
    sources: list[Any] = [first.base_dir] if manifests is None else list(manifests)
    pool = [x for x in sources if isinstance(x, Manifest)]
    pool += load_manifests([x for x in sources if not isinstance(x, Manifest)])
    pool.append(first)
    return pool


def verify_manifests(
    manifests: Sequence[Manifest | str | os.PathLike[str]],
    *,
    public_keys: Sequence[PublicKey] = (),
    policy: Any = None,
    require_signature: bool = True,
    threshold: int = 1,
    check_subjects: bool = True,
    require_subjects: bool = False,
) -> ChainResult:
    """Verify manifests one by one (no chain walk), then the policy checks that apply to them.

    Each manifest gets its signature, schema and subject checks (and, for training, the
    ledger check of :func:`check_ledger`).

    Args:
        manifests: Manifests or manifest files.
        public_keys: Trusted public keys.
        policy: A :class:`safeguard.policy.Policy`, or ``None``.
        require_signature: Whether each manifest needs ``threshold`` trusted signatures.
        threshold: Distinct trusted keys that must have signed.
        check_subjects: Recompute the digests of subjects that are present.
        require_subjects: Fail on an absent subject even when the policy does not require
            it (a policy with ``provenance.require_subjects`` always does).

    Returns:
        A :class:`ChainResult` over these manifests.
    """
    loaded = [m if isinstance(m, Manifest) else load_manifest(m) for m in manifests]
    needed_by = required_by(policy, require_subjects)
    links: list[ChainLink] = []
    unchecked: list[str] = []
    for m in loaded:
        more, missing = verify_one(
            m,
            keys=public_keys,
            threshold=threshold,
            require_signature=require_signature,
            check_subjects=check_subjects,
            required_by=needed_by,
        )
        links.extend(more)
        unchecked.extend(missing)
    if policy is not None:
        for extra in (
            signatures_skipped_link(policy, require_signature, " (--allow-unsigned)"),
            subjects_skipped_link(policy, check_subjects),
        ):
            if extra is not None:
                links.append(extra)
        links.extend(check_policy(loaded, policy))
    return ChainResult(
        links=tuple(links),
        manifests=tuple(loaded),
        unchecked=tuple(unchecked),
        subjects_skipped=not check_subjects,
        signatures_checked=require_signature or bool(public_keys),
    )
