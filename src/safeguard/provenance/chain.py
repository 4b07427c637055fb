"""Walk a chain of manifests: generation -> training -> scrub -> raw dataset.

Each manifest is verified on its own (signature, predicate schema, digests of
subject files that are present); then each *link* is checked: the digest a
later step consumed must be the subject digest of an earlier step's manifest.

::

    generation.model.digest        == training.subject (model folder)
    training.resolvedDependencies  == scrub.outputs / scrub.subject  (role: dataset)
    scrub.inputs                   == dataset.subject (raw data)

With a policy, the run must also satisfy it: epsilon spent <= the policy's
``privacy.target_epsilon`` (and delta), the scrub run used
``provenance.required_scrub_policy``, generations carry the required watermark,
and every manifest is signed by a trusted key when ``signing_required``.
A failed check is reported as a named link, e.g. ``training -> scrub``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeguard.errors import SafeguardError, UsageError, VerificationError
from safeguard.provenance.keys import PublicKey
from safeguard.provenance.manifest import Manifest, load_manifest, verify

__all__ = [
    "ChainError",
    "ChainLink",
    "ChainResult",
    "check_policy",
    "load_manifests",
    "verify_chain",
]

log = logging.getLogger(__name__)


class ChainError(VerificationError):
    """A chain of manifests does not verify; the message names the broken link."""


@dataclass(frozen=True, kw_only=True)
class ChainLink:
    """One check in a chain walk.

    Attributes:
        name: What was checked, e.g. ``generation -> training`` or ``policy: epsilon``.
        ok: Whether it passed.
        detail: The evidence (digests, numbers) or the reason it failed.
    """

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, kw_only=True)
class ChainResult:
    """The outcome of :func:`verify_chain`.

    Attributes:
        links: Every check, in walk order.
        manifests: The manifests walked, from the start back to raw data.
    """

    links: tuple[ChainLink, ...]
    manifests: tuple[Manifest, ...]

    @property
    def ok(self) -> bool:
        """True when every link passed."""
        return all(link.ok for link in self.links)

    @property
    def broken(self) -> list[ChainLink]:
        """The links that failed."""
        return [link for link in self.links if not link.ok]

    def raise_for_failure(self) -> None:
        """Raise :class:`ChainError` naming every broken link, if any."""
        if not self.ok:
            raise ChainError(
                "; ".join(f"broken link {link.name!r}: {link.detail}" for link in self.broken)
            )


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


def _short(sha: str) -> str:
    return f"sha256:{sha[:12]}..."


def _label(m: Manifest) -> str:
    return f"{m.kind} manifest {m.path.name if m.path else '<memory>'}"


def _deps(training: Manifest, role: str) -> list[dict[str, Any]]:
    deps = training.statement.predicate.get("buildDefinition", {}).get("resolvedDependencies", [])
    return [d for d in deps if d.get("annotations", {}).get("role") == role]


def _ledger(training: Manifest) -> dict[str, Any] | None:
    for item in training.statement.predicate.get("runDetails", {}).get("byproducts", []):
        if isinstance(item, dict) and item.get("name") == "privacy-ledger":
            ann = item.get("annotations")
            return ann if isinstance(ann, dict) else None
    return None


class _Walker:
    def __init__(
        self,
        pool: Sequence[Manifest],
        keys: Sequence[PublicKey],
        threshold: int,
        require_signature: bool,
        check_subjects: bool,
    ) -> None:
        self.by_digest: dict[str, list[Manifest]] = {}
        for m in pool:
            for s in m.statement.subjects:
                self.by_digest.setdefault(s.sha256, []).append(m)
        self.keys = list(keys)
        self.threshold = threshold
        self.require_signature = require_signature
        self.check_subjects = check_subjects
        self.links: list[ChainLink] = []
        self.walked: list[Manifest] = []

    def find(self, sha: str, kind: str) -> Manifest | None:
        for m in self.by_digest.get(sha, []):
            if m.kind == kind:
                return m
        return None

    def link(self, name: str, ok: bool, detail: str) -> None:
        self.links.append(ChainLink(name=name, ok=ok, detail=detail))

    def visit(self, m: Manifest) -> None:
        if any(m is w for w in self.walked):
            return
        self.walked.append(m)
        label = _label(m)
        try:
            res = verify(
                m,
                self.keys,
                threshold=self.threshold,
                require_signature=self.require_signature,
                check_subjects=self.check_subjects,
            )
        except VerificationError as exc:
            self.link(f"{label}: verify", False, str(exc))
            return
        parts = []
        if res.key_ids:
            parts.append("signed by " + ", ".join(k[:16] for k in res.key_ids))
        else:
            parts.append("signature not required")
        checked = [s.name for s in res.subjects if s.status == "ok"]
        if checked:
            parts.append("subject digests match: " + ", ".join(checked))
        if res.missing_subjects:
            parts.append("not present to check: " + ", ".join(res.missing_subjects))
        self.link(f"{label}: verify", True, "; ".join(parts))

    def walk(self, m: Manifest) -> None:
        self.visit(m)
        if m.kind == "generation":
            model = m.statement.predicate["model"]
            sha = model["digest"]["sha256"]
            target = self.find(sha, "training")
            if target is None:
                self.link(
                    "generation -> training",
                    False,
                    f"no training manifest has the generation's model {model.get('name', '')!r} "
                    f"({_short(sha)}) as its subject",
                )
                return
            self.link(
                "generation -> training",
                True,
                f"model {_short(sha)} is the subject of {_label(target)}",
            )
            self.walk(target)
        elif m.kind == "training":
            datasets = _deps(m, "dataset")
            if not datasets:
                self.link(
                    "training -> scrub",
                    False,
                    "the training run lists no dataset in resolvedDependencies",
                )
            for dep in datasets:
                sha = dep["digest"]["sha256"]
                name = dep.get("name") or dep.get("uri") or _short(sha)
                records = self.find(sha, "dataset")
                if records is not None:  # optional: the training data's own Merkle root
                    pred = records.statement.predicate
                    self.link(
                        "training -> training-data manifest",
                        True,
                        f"dataset {name!r} {_short(sha)} is the subject of {_label(records)} "
                        f"(Merkle root {pred['merkle']['root'][:12]}..., {pred['record_count']} records)",
                    )
                    self.visit(records)
                target = self.find(sha, "scrub")
                if target is None:
                    self.link(
                        "training -> scrub",
                        False,
                        f"no scrub manifest has the training dataset {name!r} ({_short(sha)}) among its "
                        "subjects: the data was not scrubbed, or its manifest is missing",
                    )
                    continue
                self.link(
                    "training -> scrub",
                    True,
                    f"dataset {name!r} {_short(sha)} is the output of {_label(target)}",
                )
                self.walk(target)
        elif m.kind == "scrub":
            for item in m.statement.predicate["inputs"]:
                sha = item["digest"]["sha256"]
                name = item.get("name") or item.get("uri") or _short(sha)
                target = self.find(sha, "dataset")
                if target is None:
                    self.link(
                        "scrub -> raw dataset",
                        False,
                        f"no dataset manifest has the scrub input {name!r} ({_short(sha)}) as its subject",
                    )
                    continue
                root = target.statement.predicate["merkle"]["root"]
                self.link(
                    "scrub -> raw dataset",
                    True,
                    f"input {name!r} {_short(sha)} is the subject of {_label(target)} "
                    f"(Merkle root {root[:12]}..., {target.statement.predicate['record_count']} records)",
                )
                self.walk(target)


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
            ledger = _ledger(m)
            eps = ledger.get("epsilon_spent") if ledger else None
            if not isinstance(eps, (int, float)):
                links.append(
                    ChainLink(
                        name="policy: epsilon",
                        ok=False,
                        detail=f"{_label(m)} records no privacy-ledger byproduct with epsilon_spent",
                    )
                )
            else:
                ok = eps <= privacy.target_epsilon
                links.append(
                    ChainLink(
                        name="policy: epsilon",
                        ok=ok,
                        detail=f"epsilon spent {eps:g} {'<=' if ok else '>'} policy target_epsilon "
                        f"{privacy.target_epsilon:g} ({policy.name})",
                    )
                )
            delta = ledger.get("delta") if ledger else None
            if privacy.target_delta is not None and isinstance(delta, (int, float)):
                ok = delta <= privacy.target_delta
                links.append(
                    ChainLink(
                        name="policy: delta",
                        ok=ok,
                        detail=f"delta {delta:g} {'<=' if ok else '>'} policy target_delta {privacy.target_delta:g}",
                    )
                )
        if m.kind == "scrub" and prov is not None and prov.required_scrub_policy:
            used = m.statement.predicate["policy"]["name"]
            ok = used == prov.required_scrub_policy
            links.append(
                ChainLink(
                    name="policy: scrub policy",
                    ok=ok,
                    detail=f"{_label(m)} applied PII policy {used!r}; required {prov.required_scrub_policy!r}",
                )
            )
        if m.kind == "generation" and wm is not None and wm.required:
            mark = m.statement.predicate.get("watermark")
            if not mark:
                links.append(
                    ChainLink(
                        name="policy: watermark",
                        ok=False,
                        detail=f"{_label(m)} records no watermark",
                    )
                )
            else:
                ok = mark.get("scheme") == wm.scheme
                links.append(
                    ChainLink(
                        name="policy: watermark",
                        ok=ok,
                        detail=f"scheme {mark.get('scheme')!r} (key_id {str(mark.get('key_id'))[:16]}); "
                        f"policy requires {wm.scheme!r}",
                    )
                )
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


def _trusted(keys: Sequence[PublicKey], policy: Any) -> list[PublicKey]:
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


def verify_chain(
    start: Manifest | str | os.PathLike[str],
    *,
    manifests: Sequence[Manifest | str | os.PathLike[str]] | None = None,
    public_keys: Sequence[PublicKey] = (),
    policy: Any = None,
    require_signature: bool | None = None,
    check_subjects: bool = True,
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
        check_subjects: Recompute digests of subject files that are present.

    Returns:
        A :class:`ChainResult`; call :meth:`ChainResult.raise_for_failure` to raise on a
        broken link.

    Raises:
        UsageError: Signatures are required but no public key was given.
    """
    first = start if isinstance(start, Manifest) else load_manifest(start)
    if manifests is None:
        pool_src: list[Any] = [first.base_dir]
    else:
        pool_src = list(manifests)
    pool = [x for x in pool_src if isinstance(x, Manifest)]
    pool += load_manifests([x for x in pool_src if not isinstance(x, Manifest)])
    pool.append(first)
    prov = getattr(policy, "provenance", None)
    threshold = int(getattr(prov, "min_signatures", 1) or 1)
    if require_signature is None:
        require_signature = bool(prov.signing_required) if prov is not None else bool(public_keys)
    keys = _trusted(public_keys, policy)
    if require_signature and not keys:
        raise UsageError(
            "signatures are required (policy provenance.signing_required or --pubkey) but no trusted "
            "public key was given; pass --pubkey KEY.pub, or --allow-unsigned to skip signature checks"
        )
    walker = _Walker(pool, keys, threshold, require_signature, check_subjects)
    walker.walk(first)
    links = list(walker.links)
    if policy is not None:
        if prov is not None and prov.signing_required and not require_signature:
            links.append(
                ChainLink(
                    name="policy: signatures",
                    ok=False,
                    detail=f"policy {policy.name!r} requires signed manifests, but signature checks "
                    "were skipped; verify with --pubkey instead of --allow-unsigned",
                )
            )
        links.extend(check_policy(walker.walked, policy))
    return ChainResult(links=tuple(links), manifests=tuple(walker.walked))
