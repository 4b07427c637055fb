"""The walk itself: verify one manifest, then follow its digests back to the step before.

::

    generation.model.digest        == training.subject (model folder)
    training.resolvedDependencies  == scrub.outputs / scrub.subject  (role: dataset)
    scrub.inputs                   == dataset.subject (raw data)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safeguard.errors import VerificationError
from safeguard.provenance.chain_ledger import check_ledger
from safeguard.provenance.chain_result import ChainLink, manifest_label, short_digest
from safeguard.provenance.keys import PublicKey
from safeguard.provenance.manifest import (
    Manifest,
    SubjectCheck,
    VerificationResult,
    missing_subjects_message,
    verify,
)

__all__ = ["Walker", "verify_one"]


def verify_one(
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
        links.append(ChainLink(name=f"{manifest_label(m)}: verify", ok=False, detail=str(exc)))
    else:
        links.append(_verified_link(m, res, check_subjects, required_by, unchecked))
    if check_subjects:
        ledger = check_ledger(m)
        if ledger is not None:
            links.append(ledger)
    return links, unchecked


def _verified_link(
    m: Manifest,
    res: VerificationResult,
    check_subjects: bool,
    required_by: str | None,
    unchecked: list[str],
) -> ChainLink:
    """The verify link of a manifest whose signature and schema passed; subjects not present
    (and not required) are appended to ``unchecked``."""
    label = manifest_label(m)
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
    return ChainLink(name=f"{label}: verify", ok=ok, detail="; ".join(parts))


def _deps(training: Manifest, role: str) -> list[dict[str, Any]]:
    deps = training.statement.predicate.get("buildDefinition", {}).get("resolvedDependencies", [])
    return [d for d in deps if d.get("annotations", {}).get("role") == role]


class Walker:
    """Walks from one manifest back to raw data over a pool of manifests, collecting links."""

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
        links, unchecked = verify_one(
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
            self._from_generation(m)
        elif m.kind == "training":
            self._from_training(m)
        elif m.kind == "scrub":
            self._from_scrub(m)

    def _follow(
        self, link: str, sha: str, kind: str, *, what: str, role: str, missing: str
    ) -> None:
        """Link to the ``kind`` manifest whose subject is ``sha`` and walk on from it, or add a
        failed ``link`` saying what is ``missing``."""
        target = self.find(sha, kind)
        if target is None:
            self.link(link, False, missing)
            return
        self.link(link, True, _is_of(what, role, target))
        self.walk(target)

    def _from_generation(self, m: Manifest) -> None:
        model = m.statement.predicate["model"]
        sha = model["digest"]["sha256"]
        self._follow(
            "generation -> training",
            sha,
            "training",
            what=f"model {short_digest(sha)}",
            role="subject",
            missing=f"no training manifest has the generation's model {model.get('name', '')!r} "
            f"({short_digest(sha)}) as its subject",
        )

    def _from_training(self, m: Manifest) -> None:
        datasets = _deps(m, "dataset")
        if not datasets:
            self.link(
                "training -> scrub",
                False,
                "the training run lists no dataset in resolvedDependencies",
            )
        for dep in datasets:
            sha, name = _sha_and_name(dep)
            records = self.find(sha, "dataset")
            if records is not None:  # optional: the training data's own Merkle root
                what = f"dataset {name!r} {short_digest(sha)}"
                self.link(
                    "training -> training-data manifest", True, _is_of(what, "subject", records)
                )
                self.visit(records)
            self._follow(
                "training -> scrub",
                sha,
                "scrub",
                what=f"dataset {name!r} {short_digest(sha)}",
                role="output",
                missing=f"no scrub manifest has the training dataset {name!r} ({short_digest(sha)}) "
                "among its subjects: the data was not scrubbed, or its manifest is missing",
            )

    def _from_scrub(self, m: Manifest) -> None:
        for item in m.statement.predicate["inputs"]:
            sha, name = _sha_and_name(item)
            self._follow(
                "scrub -> raw dataset",
                sha,
                "dataset",
                what=f"input {name!r} {short_digest(sha)}",
                role="subject",
                missing=f"no dataset manifest has the scrub input {name!r} ({short_digest(sha)}) "
                "as its subject",
            )


def _sha_and_name(resource: dict[str, Any]) -> tuple[str, str]:
    """A resource's sha256 and its name (or URI, or short digest) for messages."""
    sha = resource["digest"]["sha256"]
    return sha, resource.get("name") or resource.get("uri") or short_digest(sha)


def _is_of(what: str, role: str, target: Manifest) -> str:
    """``<what> is the <role> of <target's label>``; a dataset manifest adds its Merkle root
    and record count."""
    text = f"{what} is the {role} of {manifest_label(target)}"
    if target.kind == "dataset":
        pred = target.statement.predicate
        text += f" (Merkle root {pred['merkle']['root'][:12]}..., {pred['record_count']} records)"
    return text
