"""The policy's side of a chain check: which keys are trusted, what must be present, and
the ``policy: ...`` links (epsilon, delta, seeded noise, scrub policy, watermark).

A policy is read through attributes only (``policy.privacy``, ``policy.provenance``,
``policy.watermark``), as plain data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from safeguard.provenance.chain_ledger import ledger_annotations
from safeguard.provenance.chain_result import ChainLink, manifest_label
from safeguard.provenance.keys import PublicKey
from safeguard.provenance.manifest import Manifest

__all__ = [
    "check_policy",
    "required_by",
    "signatures_skipped_link",
    "subjects_skipped_link",
    "trusted_keys",
]

log = logging.getLogger("safeguard.provenance.chain")


def check_policy(manifests: Sequence[Manifest], policy: Any) -> list[ChainLink]:
    """Policy checks that apply to these manifests (signatures are checked by the walk).

    Args:
        manifests: Manifests of one run (any kinds).
        policy: A :class:`safeguard.policy.Policy`.

    Returns:
        One :class:`ChainLink` per check, named ``policy: ...``.
    """
    links: list[ChainLink] = []
    privacy = getattr(policy, "privacy", None)
    prov = getattr(policy, "provenance", None)
    wm = getattr(policy, "watermark", None)
    for m in manifests:
        if m.kind == "training" and privacy is not None:
            links.extend(_privacy_links(m, privacy, policy))
        if m.kind == "scrub" and prov is not None and prov.required_scrub_policy:
            links.append(_scrub_policy_link(m, prov.required_scrub_policy))
        if m.kind == "generation" and wm is not None and wm.required:
            links.append(_watermark_link(m, wm))
    kinds = {m.kind for m in manifests}
    if (
        prov is not None
        and prov.required_scrub_policy
        and "training" in kinds
        and "scrub" not in kinds
    ):
        links.append(
            ChainLink(
                name="policy: scrub policy",
                ok=False,
                detail=f"the policy requires data scrubbed with {prov.required_scrub_policy!r}, "
                "but no scrub manifest is part of the run",
            )
        )
    return links


def _privacy_links(m: Manifest, privacy: Any, policy: Any) -> list[ChainLink]:
    """``policy: epsilon``, ``policy: dp noise`` (when seeded) and ``policy: delta`` of a
    training manifest."""
    ledger = ledger_annotations(m)
    links = [_epsilon_link(m, ledger, privacy, policy)]
    dp = m.statement.predicate.get("buildDefinition", {}).get("externalParameters", {})
    seeded = bool(ledger.get("seeded_noise")) if ledger else False
    seeded = seeded or (dp.get("dp") or {}).get("seed") is not None
    if seeded and not getattr(privacy, "allow_seeded_noise", False):
        links.append(
            ChainLink(
                name="policy: dp noise",
                ok=False,
                detail=f"{manifest_label(m)} drew its DP noise from a fixed seed (no DP "
                f"guarantee); policy {policy.name!r} does not allow seeded noise",
            )
        )
    delta = ledger.get("delta") if ledger else None
    if privacy.target_delta is not None and isinstance(delta, (int, float)):
        ok = delta <= privacy.target_delta
        links.append(
            ChainLink(
                name="policy: delta",
                ok=ok,
                detail=f"delta {delta:g} {'<=' if ok else '>'} policy target_delta "
                f"{privacy.target_delta:g}",
            )
        )
    return links


def _epsilon_link(
    m: Manifest, ledger: dict[str, Any] | None, privacy: Any, policy: Any
) -> ChainLink:
    eps = ledger.get("epsilon_spent") if ledger else None
    if not isinstance(eps, (int, float)):
        return ChainLink(
            name="policy: epsilon",
            ok=False,
            detail=f"{manifest_label(m)} records no privacy-ledger byproduct with epsilon_spent",
        )
    ok = eps <= privacy.target_epsilon
    return ChainLink(
        name="policy: epsilon",
        ok=ok,
        detail=f"epsilon spent {eps:g} {'<=' if ok else '>'} policy target_epsilon "
        f"{privacy.target_epsilon:g} ({policy.name})",
    )


def _scrub_policy_link(m: Manifest, required: str) -> ChainLink:
    used = m.statement.predicate["policy"]["name"]
    return ChainLink(
        name="policy: scrub policy",
        ok=used == required,
        detail=f"{manifest_label(m)} applied PII policy {used!r}; required {required!r}",
    )


def _watermark_link(m: Manifest, wm: Any) -> ChainLink:
    mark = m.statement.predicate.get("watermark")
    if not mark:
        return ChainLink(
            name="policy: watermark",
            ok=False,
            detail=f"{manifest_label(m)} records no watermark",
        )
    return ChainLink(
        name="policy: watermark",
        ok=mark.get("scheme") == wm.scheme,
        detail=f"scheme {mark.get('scheme')!r} (key_id {str(mark.get('key_id'))[:16]}); "
        f"policy requires {wm.scheme!r}",
    )


def trusted_keys(keys: Sequence[PublicKey], policy: Any) -> list[PublicKey]:
    """``keys`` less those outside the policy's ``provenance.trusted_key_ids`` (if it lists any);
    a dropped key is logged as a warning."""
    prov = getattr(policy, "provenance", None)
    allowed = list(getattr(prov, "trusted_key_ids", []) or [])
    if not allowed:
        return list(keys)
    kept = [k for k in keys if k.key_id in allowed]
    dropped = [k.key_id[:16] for k in keys if k.key_id not in allowed]
    if dropped:
        log.warning(
            "ignoring public key(s) %s: not in the policy's trusted_key_ids", ", ".join(dropped)
        )
    return kept


def required_by(policy: Any, require_subjects: bool) -> str | None:
    """Who requires subjects to be present, for messages; ``None`` when nobody does."""
    prov = getattr(policy, "provenance", None)
    if prov is not None and prov.require_subjects:
        return f"policy {policy.name!r} (provenance.require_subjects)"
    return "require_subjects (--require-subjects)" if require_subjects else None


def subjects_skipped_link(policy: Any, check_subjects: bool) -> ChainLink | None:
    """A failed ``policy: subjects`` link when the policy requires subjects but they were
    skipped; else ``None``."""
    prov = getattr(policy, "provenance", None)
    if check_subjects or prov is None or not prov.require_subjects:
        return None
    return ChainLink(
        name="policy: subjects",
        ok=False,
        detail=f"policy {policy.name!r} requires every subject to be present and checked "
        "(provenance.require_subjects), but subject checks were skipped; verify without "
        "--skip-subjects",
    )


def signatures_skipped_link(policy: Any, require_signature: bool, fix: str) -> ChainLink | None:
    """A failed ``policy: signatures`` link when the policy requires signed manifests but
    signatures were not checked (``fix`` ends the message); else ``None``."""
    prov = getattr(policy, "provenance", None)
    if prov is None or not prov.signing_required or require_signature:
        return None
    return ChainLink(
        name="policy: signatures",
        ok=False,
        detail=f"policy {policy.name!r} requires signed manifests, but signature checks were "
        f"skipped{fix}",
    )
