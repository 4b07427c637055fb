"""Manifests: signed DSSE envelopes around in-toto statements, written and verified.

A manifest file is the DSSE JSON envelope. Subject names are paths relative to
the manifest's folder, so a folder of artifacts and manifests can be moved or
handed over as a whole and still verified. A subject that is not at its signed
path (a file left behind, a model folder renamed) cannot be checked: :func:`verify`
reports it as ``missing``, or fails with :class:`MissingSubjectError` when subjects
are required.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safeguard.errors import DataError, VerificationError
from safeguard.provenance.digest import digest_directory, sha256_file
from safeguard.provenance.dsse import INTOTO_PAYLOAD_TYPE, Envelope, EnvelopeFormatError
from safeguard.provenance.keys import PrivateKey, PublicKey, load_private_key
from safeguard.provenance.predicates import (
    PredicateSchemaError,
    get_predicate,
    kind_of,
    validate_predicate,
)
from safeguard.provenance.statement import Statement, Subject

__all__ = [
    "Manifest",
    "ManifestSchemaError",
    "MissingSubjectError",
    "SubjectCheck",
    "SubjectDigestError",
    "VerificationResult",
    "load_manifest",
    "sign",
    "subjects_from_paths",
    "verify",
    "write_manifest",
]

log = logging.getLogger(__name__)


class SubjectDigestError(VerificationError):
    """A subject file is present but its digest differs from the one in the statement."""


class MissingSubjectError(SubjectDigestError):
    """A subject is not at its signed path, so its digest cannot be checked (when required)."""


class ManifestSchemaError(VerificationError):
    """A manifest's predicate does not match the schema of its (known) predicate type."""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A parsed manifest.

    Attributes:
        envelope: The DSSE envelope as read.
        statement: Its payload, parsed.
        kind: The registered kind of the predicate (``dataset``, ``scrub``, ...).
        path: The file it was read from, if any.
    """

    envelope: Envelope
    statement: Statement
    kind: str
    path: Path | None = None

    @property
    def base_dir(self) -> Path:
        """The folder subject names are relative to."""
        return self.path.parent if self.path is not None else Path.cwd()

    def subject_path(self, name: str, base_dir: str | os.PathLike[str] | None = None) -> Path:
        """Where the subject called ``name`` is looked for: ``base_dir`` (default
        :attr:`base_dir`, the manifest's folder) joined with the name, unless it is absolute."""
        target = Path(name)
        if target.is_absolute():
            return target
        return (Path(base_dir) if base_dir is not None else self.base_dir) / target

    @classmethod
    def from_envelope(cls, envelope: Envelope, *, path: Path | None = None) -> Manifest:
        """Parse and schema-check the envelope's statement.

        Raises:
            EnvelopeFormatError: Wrong payloadType.
            StatementFormatError: The payload is not an in-toto Statement v1.
            UnknownPredicateError: The predicateType is not registered.
            ManifestSchemaError: The predicate does not match its schema (a failed check).
        """
        where = str(path) if path is not None else "<envelope>"
        if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
            raise EnvelopeFormatError(
                f"{where}: payloadType is {envelope.payload_type!r}; manifests carry in-toto "
                f"statements ({INTOTO_PAYLOAD_TYPE!r})"
            )
        statement = Statement.from_bytes(envelope.payload)
        kind_of(statement.predicate_type)  # unknown type: a usage error
        try:
            kind = validate_predicate(statement.predicate_type, statement.predicate)
        except PredicateSchemaError as exc:
            raise ManifestSchemaError(f"{where}: {exc}") from exc
        return cls(envelope=envelope, statement=statement, kind=kind, path=path)


@dataclass(frozen=True, kw_only=True)
class SubjectCheck:
    """The digest check of one subject.

    Attributes:
        name: The subject's name.
        status: ``ok`` (recomputed and equal) or ``missing`` (no such file; not checked).
        path: Where the file or folder was looked for.
    """

    name: str
    status: Literal["ok", "missing"]
    path: str = ""


@dataclass(frozen=True, kw_only=True)
class VerificationResult:
    """What :func:`verify` established.

    Attributes:
        manifest: The manifest verified.
        key_ids: Trusted keys whose signature verified (empty when no key was required).
        subjects: One check per subject.
    """

    manifest: Manifest
    key_ids: tuple[str, ...]
    subjects: tuple[SubjectCheck, ...]

    @property
    def missing_subjects(self) -> list[str]:
        """Subjects whose files were not there to check."""
        return [s.name for s in self.subjects if s.status == "missing"]


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and parse a manifest file (no signature check).

    Raises:
        FileNotFoundError: No such file.
        EnvelopeFormatError, StatementFormatError, UnknownPredicateError:
            The file is not a manifest (all are :class:`~safeguard.errors.UsageError`).
        ManifestSchemaError: The predicate does not match its schema (a
            :class:`~safeguard.errors.VerificationError`).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"manifest {str(p)!r} does not exist")
    if p.is_dir():
        raise DataError(f"manifest {str(p)!r} is a directory; pass the manifest JSON file")
    envelope = Envelope.from_json(p.read_bytes(), source=str(p))
    return Manifest.from_envelope(envelope, path=p)


#: Directories with at most this many files list their per-file digests in the subject.
MAX_LISTED_FILES = 10_000


def _digest_any(path: Path) -> tuple[str, dict[str, Any]]:
    if path.is_dir():
        d = digest_directory(path)
        annotations: dict[str, Any] = {"kind": "directory", "file_count": len(d.files)}
        if len(d.files) <= MAX_LISTED_FILES:
            annotations["files"] = {f.path: f.sha256 for f in d.files}
        return d.sha256, annotations
    return sha256_file(path), {}


def _changed_files(subject: Subject, current: dict[str, Any]) -> str:
    before = subject.annotations.get("files")
    after = current.get("files")
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ""
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    parts = []
    for label, names in (("changed", changed), ("added", added), ("removed", removed)):
        if names:
            parts.append(f"{label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")
    return f" ({'; '.join(parts)})" if parts else ""


def subjects_from_paths(
    paths: Sequence[str | os.PathLike[str]], *, base_dir: str | os.PathLike[str] | None = None
) -> list[Subject]:
    """Subjects for files or folders, named relative to ``base_dir`` (the manifest's folder).

    Raises:
        FileNotFoundError: A path does not exist.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    subjects = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"subject {str(p)!r} does not exist")
        sha, annotations = _digest_any(p)
        name = Path(os.path.relpath(p.resolve(), base.resolve())).as_posix()
        subjects.append(Subject(name=name, digest={"sha256": sha}, annotations=annotations))
    return subjects


def _as_private_key(key: PrivateKey | str | os.PathLike[str]) -> PrivateKey:
    if isinstance(key, PrivateKey):
        return key
    return load_private_key(key)


def sign(
    statement_or_envelope: Statement | Envelope | Manifest,
    key: PrivateKey | str | os.PathLike[str],
) -> Envelope:
    """Sign a statement (wrapping it in a DSSE envelope) or add a signature to an envelope.

    Args:
        statement_or_envelope: What to sign; an envelope keeps its other signatures.
        key: A :class:`PrivateKey` or the path of a private key file.

    Returns:
        The signed envelope.
    """
    if isinstance(statement_or_envelope, Manifest):
        envelope = statement_or_envelope.envelope
    elif isinstance(statement_or_envelope, Statement):
        envelope = Envelope(payload=statement_or_envelope.to_bytes())
    else:
        envelope = statement_or_envelope
    return envelope.signed(_as_private_key(key))


def write_manifest(
    kind: str,
    subject_paths: Sequence[str | os.PathLike[str]],
    predicate_dict: Mapping[str, Any],
    out_path: str | os.PathLike[str],
    signing_key: PrivateKey | str | os.PathLike[str] | None = None,
) -> Path:
    """Write a manifest for artifacts a safeguard verb just produced.

    This is the one call ``safeguard scrub/train/generate --manifest`` need: it digests the
    subjects, validates the predicate, wraps the statement in a DSSE envelope, signs it
    when a key is given, and writes the JSON.

    Args:
        kind: ``dataset``, ``scrub``, ``training`` or ``generation`` (or a registered kind).
        subject_paths: The artifacts (files or folders) the manifest is about.
        predicate_dict: The predicate, e.g. from :func:`~safeguard.provenance.scrub_predicate`.
        out_path: Where to write the manifest; subject names are relative to its folder.
        signing_key: A private key or its file path; ``None`` writes an unsigned envelope
            that ``safeguard manifest sign`` can sign later.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        UnknownPredicateError: ``kind`` is not registered.
        PredicateSchemaError: The predicate does not match its schema or carries key material.
        FileNotFoundError: A subject path does not exist.
    """
    spec = get_predicate(kind)
    predicate = json.loads(json.dumps(dict(predicate_dict)))  # plain JSON data only
    validate_predicate(spec.predicate_type, predicate)
    out = Path(out_path)
    subjects = subjects_from_paths(subject_paths, base_dir=out.parent)
    statement = Statement(
        subjects=tuple(subjects), predicate_type=spec.predicate_type, predicate=predicate
    )
    envelope = Envelope(payload=statement.to_bytes())
    if signing_key is not None:
        envelope = sign(envelope, signing_key)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(envelope.to_json(), encoding="utf-8")
    log.info(
        "wrote %s manifest %s (%d subject(s), %d signature(s))",
        kind,
        out,
        len(subjects),
        len(envelope.signatures),
    )
    return out


def missing_subjects_message(missing: Sequence[SubjectCheck], base_dir: Path) -> str:
    """Say which subjects are not where the manifest puts them, and how to fix it.

    >>> print(missing_subjects_message([SubjectCheck(name="clean.jsonl", status="missing",
    ...     path="out/clean.jsonl")], Path("out")))  # doctest: +NORMALIZE_WHITESPACE
    subject 'clean.jsonl' is not at 'out/clean.jsonl', so its digest cannot be checked;
    subject names are relative to the manifest's folder ('out'): put the artifact back at
    that path under the name it was signed with (a renamed file or model folder does not
    match), and keep the manifest in the folder it was written to, beside its artifacts
    """
    where = "; ".join(f"subject {s.name!r} is not at {s.path!r}" for s in missing)
    its = "its digest" if len(missing) == 1 else "their digests"
    return (
        f"{where}, so {its} cannot be checked; subject names are relative to the "
        f"manifest's folder ({str(base_dir)!r}): put the artifact back at that path under the "
        "name it was signed with (a renamed file or model folder does not match), and keep the "
        "manifest in the folder it was written to, beside its artifacts"
    )


def _check_subjects(manifest: Manifest, base_dir: Path, require: bool) -> tuple[SubjectCheck, ...]:
    checks = []
    for subject in manifest.statement.subjects:
        target = manifest.subject_path(subject.name, base_dir)
        if not target.exists():
            checks.append(SubjectCheck(name=subject.name, status="missing", path=str(target)))
            continue
        actual, current = _digest_any(target)
        if actual != subject.sha256:
            raise SubjectDigestError(
                f"subject {subject.name!r}: sha256 of {str(target)!r} is {actual[:16]}..., "
                f"the manifest pins {subject.sha256[:16]}...{_changed_files(subject, current)}; "
                "the file changed or the manifest points at another artifact"
            )
        listed = subject.annotations.get("files")
        if (
            isinstance(listed, dict)
            and isinstance(current.get("files"), dict)
            and listed != current["files"]
        ):
            # same contents in the same order, under other names: the signed file list differs
            raise SubjectDigestError(
                f"subject {subject.name!r}: the folder's contents match but its file names do not"
                f"{_changed_files(subject, current)}; files were renamed"
            )
        checks.append(SubjectCheck(name=subject.name, status="ok", path=str(target)))
    missing = [c for c in checks if c.status == "missing"]
    if require and missing:
        raise MissingSubjectError(missing_subjects_message(missing, base_dir))
    return tuple(checks)


def verify(
    manifest: Manifest | Envelope | str | os.PathLike[str],
    public_keys: Sequence[PublicKey] | PublicKey | None = None,
    *,
    threshold: int = 1,
    require_signature: bool = True,
    check_subjects: bool = True,
    require_subjects: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
) -> VerificationResult:
    """Verify a manifest: signatures, predicate schema, and subject digests of present files.

    Args:
        manifest: A manifest, an envelope, or a manifest file path.
        public_keys: Trusted public key(s).
        threshold: Distinct trusted keys that must have signed.
        require_signature: Fail when no trusted signature verifies (set False only to inspect
            unsigned drafts).
        check_subjects: Recompute the digests of subject files that are present.
        require_subjects: Fail (:class:`MissingSubjectError`) when a subject file is absent
            instead of reporting it as ``missing``.
        base_dir: Folder subject names are relative to (default: the manifest's folder).

    Returns:
        A :class:`VerificationResult`.

    Raises:
        SignatureError: The signature check failed.
        SubjectDigestError: A subject file's digest differs.
        MissingSubjectError: ``require_subjects`` and a subject is not at its path.
        UsageError: The manifest is malformed (see :func:`load_manifest`).
    """
    if isinstance(manifest, (str, os.PathLike)):
        m = load_manifest(manifest)
    elif isinstance(manifest, Envelope):
        m = Manifest.from_envelope(manifest)
    else:
        m = manifest
    keys = [public_keys] if isinstance(public_keys, PublicKey) else list(public_keys or [])
    key_ids: list[str] = []
    if require_signature or keys:
        key_ids = m.envelope.verify(keys, threshold=threshold)
    subjects: tuple[SubjectCheck, ...] = ()
    if check_subjects:
        subjects = _check_subjects(
            m, Path(base_dir) if base_dir is not None else m.base_dir, require_subjects
        )
    return VerificationResult(manifest=m, key_ids=tuple(key_ids), subjects=subjects)
