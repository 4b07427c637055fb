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
from safeguard.provenance.ledger_anchor import LEDGER_FILE, compare_ledger, recorded_anchor
from safeguard.provenance.manifest import (
    Manifest,
    SubjectCheck,
    load_manifest,
    missing_subjects_message,
    verify,
)

__all__ = [
    "ChainError",
    "ChainLink",
    "ChainResult",
    "check_ledger",
    "check_policy",
    "load_manifests",
    "verify_chain",
    "verify_manifests",
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
        unchecked: Subjects that were not present, so not checked, each as
            ``"<name> (<kind> manifest <file>)"`` (only when subjects were not required).
        subjects_skipped: Subject digests were not recomputed at all (``check_subjects=False``).
        signatures_checked: Signatures were verified (False with ``--allow-unsigned``).
    """

    links: tuple[ChainLink, ...]
    manifests: tuple[Manifest, ...]
    unchecked: tuple[str, ...] = ()
    subjects_skipped: bool = False
    signatures_checked: bool = True

    @property
    def ok(self) -> bool:
        """True when every link passed."""
        return all(link.ok for link in self.links)

    @property
    def broken(self) -> list[ChainLink]:
        """The links that failed."""
        return [link for link in self.links if not link.ok]

    @property
    def verdict(self) -> str:
        """One line for people: ``verified`` / ``chain verified`` only when every subject was
        checked; otherwise what was verified and what was not checked, e.g.
        ``signatures verified; 1 subject not present, not checked: clean.jsonl (...)``."""
        if not self.ok:
            names = ", ".join(dict.fromkeys(link.name for link in self.broken))
            return f"FAILED: broken link(s): {names}"
        chain = any(" -> " in link.name for link in self.links)
        note = unchecked_note(self.unchecked, self.subjects_skipped)
        if not note:
            return "chain verified" if len(self.manifests) > 1 else "verified"
        done = []
        if self.signatures_checked:
            done.append("signatures")
        if chain:
            done.append("chain links")
        if any(link.name.startswith("policy:") for link in self.links):
            done.append("policy checks")
        if not done:
            done.append("predicate schemas" if chain else "predicate schema")
        what = done[0] if len(done) == 1 else ", ".join(done[:-1]) + " and " + done[-1]
        return f"{what} verified; {note}"

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


def unchecked_note(unchecked: Sequence[str], skipped: bool = False) -> str:
    """What was not checked, for a summary line; empty when everything was.

    >>> unchecked_note(["clean.jsonl (scrub manifest scrub.json)"])
    '1 subject not present, not checked: clean.jsonl (scrub manifest scrub.json)'
    >>> unchecked_note([], skipped=True)
    'subject digests not checked (--skip-subjects)'
    >>> unchecked_note([])
    ''
    """
    if skipped:
        return "subject digests not checked (--skip-subjects)"
    if not unchecked:
        return ""
    n = len(unchecked)
    return f"{n} subject{'' if n == 1 else 's'} not present, not checked: {', '.join(unchecked)}"


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
    annotations = _ledger(training)
    if not annotations:
        return None
    name = f"{_label(training)}: privacy ledger"
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
        recorded.append(f"head {_short(head)}")
    return ChainLink(
        name=name,
        ok=True,
        detail=f"{str(target)!r} matches the manifest's anchor ({', '.join(recorded)})",
    )


def _verify_one(
    m: Manifest,
    *,
    keys: Sequence[PublicKey],
    threshold: int,
    require_signature: bool,
    check_subjects: bool,
    required_by: str | None,
) -> tuple[list[ChainLink], list[str]]:
    """The checks of one manifest: its verify link, then its ledger link (training).

    Returns:
        The links and the subjects not present (left unchecked; empty when ``required_by``).
    """
    label = _label(m)
    links: list[ChainLink] = []
    unchecked: list[str] = []
    try:
        res = verify(
            m,
            keys,
            threshold=threshold,
            require_signature=require_signature,
            check_subjects=check_subjects,
            require_subjects=False,
        )
    except VerificationError as exc:
        links.append(ChainLink(name=f"{label}: verify", ok=False, detail=str(exc)))
    else:
        parts = []
        if res.key_ids:
            parts.append("signed by " + ", ".join(res.key_ids))
        else:
            parts.append("signature not required")
        parts.append("predicate schema ok")
        checked = [s.name for s in res.subjects if s.status == "ok"]
        if checked:
            parts.append("subject digests match: " + ", ".join(checked))
        missing: list[SubjectCheck] = [s for s in res.subjects if s.status == "missing"]
        ok = True
        if missing and required_by:
            ok = False
            parts.append(
                f"{required_by} requires every subject to be present: "
                + missing_subjects_message(missing, m.base_dir)
            )
        elif missing:
            parts.append(
                "not present, not checked: "
                + ", ".join(f"{s.name} (looked for {s.path!r})" for s in missing)
            )
            unchecked.extend(f"{s.name} ({label})" for s in missing)
        elif not check_subjects:
            parts.append("subject digests not checked (--skip-subjects)")
        links.append(ChainLink(name=f"{label}: verify", ok=ok, detail="; ".join(parts)))
    if check_subjects:
        ledger = check_ledger(m)
        if ledger is not None:
            links.append(ledger)
    return links, unchecked


def _required_by(policy: Any, require_subjects: bool) -> str | None:
    """Who requires subjects to be present, for messages; ``None`` when nobody does."""
    prov = getattr(policy, "provenance", None)
    if prov is not None and prov.require_subjects:
        return f"policy {policy.name!r} (provenance.require_subjects)"
    return "require_subjects (--require-subjects)" if require_subjects else None


def _subjects_skipped_link(policy: Any, check_subjects: bool) -> ChainLink | None:
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


class _Walker:
    def __init__(
        self,
        pool: Sequence[Manifest],
        keys: Sequence[PublicKey],
        threshold: int,
        require_signature: bool,
        check_subjects: bool,
        required_by: str | None = None,
    ) -> None:
        self.by_digest: dict[str, list[Manifest]] = {}
        for m in pool:
            for s in m.statement.subjects:
                self.by_digest.setdefault(s.sha256, []).append(m)
        self.keys = list(keys)
        self.threshold = threshold
        self.require_signature = require_signature
        self.check_subjects = check_subjects
        self.required_by = required_by
        self.links: list[ChainLink] = []
        self.walked: list[Manifest] = []
        self.unchecked: list[str] = []

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
        links, unchecked = _verify_one(
            m,
            keys=self.keys,
            threshold=self.threshold,
            require_signature=self.require_signature,
            check_subjects=self.check_subjects,
            required_by=self.required_by,
        )
        self.links.extend(links)
        self.unchecked.extend(unchecked)

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
            dp = m.statement.predicate.get("buildDefinition", {}).get("externalParameters", {})
            seeded = bool(ledger.get("seeded_noise")) if ledger else False
            seeded = seeded or (dp.get("dp") or {}).get("seed") is not None
            if seeded and not getattr(privacy, "allow_seeded_noise", False):
                links.append(
                    ChainLink(
                        name="policy: dp noise",
                        ok=False,
                        detail=f"{_label(m)} drew its DP noise from a fixed seed (no DP guarantee); "
                        f"policy {policy.name!r} does not allow seeded noise",
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
    walker = _Walker(
        pool,
        keys,
        threshold,
        require_signature,
        check_subjects,
        _required_by(policy, require_subjects),
    )
    walker.walk(first)
    links = list(walker.links)
    if policy is not None:
        skipped = _subjects_skipped_link(policy, check_subjects)
        if skipped is not None:
            links.append(skipped)
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
    return ChainResult(
        links=tuple(links),
        manifests=tuple(walker.walked),
        unchecked=tuple(walker.unchecked),
        subjects_skipped=not check_subjects,
        signatures_checked=require_signature or bool(keys),
    )


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
    required_by = _required_by(policy, require_subjects)
    links: list[ChainLink] = []
    unchecked: list[str] = []
    for m in loaded:
        more, missing = _verify_one(
            m,
            keys=public_keys,
            threshold=threshold,
            require_signature=require_signature,
            check_subjects=check_subjects,
            required_by=required_by,
        )
        links.extend(more)
        unchecked.extend(missing)
    if policy is not None:
        prov = getattr(policy, "provenance", None)
        if prov is not None and prov.signing_required and not require_signature:
            links.append(
                ChainLink(
                    name="policy: signatures",
                    ok=False,
                    detail=f"policy {policy.name!r} requires signed manifests, but signature "
                    "checks were skipped (--allow-unsigned)",
                )
            )
        skipped = _subjects_skipped_link(policy, check_subjects)
        if skipped is not None:
            links.append(skipped)
        links.extend(check_policy(loaded, policy))
    return ChainResult(
        links=tuple(links),
        manifests=tuple(loaded),
        unchecked=tuple(unchecked),
        subjects_skipped=not check_subjects,
        signatures_checked=require_signature or bool(public_keys),
    )
